// Logistic regression on an imbalanced synthetic set: focal loss vs cross-entropy.
//
// 2,000 samples with 5 features and about 10 % positives, trained by mini-batch
// SGD twice: with focal loss (alpha = 0.75, gamma = 2) and with plain
// cross-entropy (gamma = 0, alpha = 0.5, which weights both classes equally).
// Prints the loss of every epoch, then the confusion matrix, precision and
// recall of both models on the training set. The data generator matches
// examples/logistic_regression.py, so both print the same numbers.
//
// Build (see docs/cpp.md):
//   cmake -S examples/cpp -B build/example -DCMAKE_PREFIX_PATH=<focal_native prefix>
//   cmake --build build/example && ./build/example/logistic_regression
#include <focal_native/focal_native.hpp>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <vector>

namespace {

constexpr int kSamples = 2000, kFeatures = 5;
constexpr double kTrueW[kFeatures] = {1.5, -2.0, 1.0, 0.5, 0.0};
constexpr double kTrueB = -4.4;
constexpr int kEpochs = 30, kBatch = 100;
constexpr double kLearningRate = 0.5;
constexpr double kPi = 3.141592653589793;

// splitmix64 with Box-Muller normals: the same sequence as the Python example.
struct SplitMix64 {
  std::uint64_t state;
  std::uint64_t next() {
    std::uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  double uniform() { return static_cast<double>(next() >> 11) * 0x1p-53; }
  double normal() {
    const double u1 = uniform(), u2 = uniform();
    return std::sqrt(-2.0 * std::log(1.0 - u1)) * std::cos(2.0 * kPi * u2);
  }
};

struct Data {
  std::vector<double> x;        // kSamples x kFeatures, row-major
  std::vector<std::uint8_t> y;  // 0 / 1
};

Data make_data(std::uint64_t seed) {
  SplitMix64 rng{seed};
  Data d;
  d.x.resize(kSamples * kFeatures);
  d.y.resize(kSamples);
  for (int i = 0; i < kSamples; ++i) {
    double t = 0.0;
    for (int j = 0; j < kFeatures; ++j) {
      d.x[i * kFeatures + j] = rng.normal();
      t += kTrueW[j] * d.x[i * kFeatures + j];
    }
    t += kTrueB;
    d.y[i] = rng.uniform() < 1.0 / (1.0 + std::exp(-t)) ? 1 : 0;
  }
  return d;
}

struct Model {
  double w[kFeatures] = {};
  double b = 0.0;
  std::vector<double> epoch_loss;
  double logit(const double* x) const {
    double t = 0.0;
    for (int j = 0; j < kFeatures; ++j) t += w[j] * x[j];
    return t + b;
  }
};

// Mini-batch SGD on the mean focal loss.
Model train(const Data& d, double alpha, double gamma) {
  focal_native::SigmoidOptions opt;
  opt.alpha = alpha;
  opt.gamma = gamma;
  opt.reduction = focal_native::Reduction::mean;
  Model m;
  std::vector<double> logits(kBatch), grad(kBatch);
  for (int epoch = 0; epoch < kEpochs; ++epoch) {
    double total = 0.0;
    for (int s = 0; s < kSamples; s += kBatch) {
      const int n = s + kBatch <= kSamples ? kBatch : kSamples - s;
      for (int i = 0; i < n; ++i) logits[i] = m.logit(&d.x[(s + i) * kFeatures]);
      // The mean loss comes back in Status::loss; grad = d(mean loss)/d(logits).
      // With a reduction there is no per-element loss output: pass a typed
      // null pointer (a bare nullptr would not deduce T).
      const focal_native::Status st = focal_native::sigmoid_focal_loss_with_grad(
          logits.data(), &d.y[s], n, opt, static_cast<double*>(nullptr), grad.data());
      if (!st) {
        std::fprintf(stderr, "focal loss failed: code %d at target %lld\n",
                     static_cast<int>(st.code), static_cast<long long>(st.index));
        std::exit(1);
      }
      // Chain rule: dL/dw_j = sum_i grad_i x_ij, dL/db = sum_i grad_i.
      double gb = 0.0, gw[kFeatures] = {};
      for (int i = 0; i < n; ++i) {
        gb += grad[i];
        for (int j = 0; j < kFeatures; ++j) gw[j] += grad[i] * d.x[(s + i) * kFeatures + j];
      }
      for (int j = 0; j < kFeatures; ++j) m.w[j] -= kLearningRate * gw[j];
      m.b -= kLearningRate * gb;
      total += st.loss * n;
    }
    m.epoch_loss.push_back(total / kSamples);
  }
  return m;
}

}  // namespace

int main() {
  const Data d = make_data(2024);
  int positives = 0;
  for (auto v : d.y) positives += v;
  std::printf("focal_native %s (C++): logistic regression, %d samples, %d features, %.1f%% positive\n",
              FOCAL_NATIVE_VERSION, kSamples, kFeatures, 100.0 * positives / kSamples);
  const Model focal = train(d, 0.75, 2.0);
  const Model ce = train(d, 0.5, 0.0);
  std::printf("epoch   focal (alpha=0.75, gamma=2)   cross-entropy (alpha=0.5, gamma=0)\n");
  for (int e = 0; e < kEpochs; ++e)
    std::printf("%5d   %27.8f   %34.8f\n", e + 1, focal.epoch_loss[e], ce.epoch_loss[e]);
  std::printf("\n");
  const struct {
    const char* name;
    const Model* m;
  } models[] = {{"focal", &focal}, {"cross-entropy", &ce}};
  for (const auto& entry : models) {
    int tp = 0, fp = 0, fn = 0, tn = 0;
    for (int i = 0; i < kSamples; ++i) {
      const bool pred = entry.m->logit(&d.x[i * kFeatures]) > 0.0;  // p > 1/2
      if (pred) (d.y[i] ? tp : fp)++;
      else (d.y[i] ? fn : tn)++;
    }
    const double precision = tp + fp ? static_cast<double>(tp) / (tp + fp) : 0.0;
    const double recall = tp + fn ? static_cast<double>(tp) / (tp + fn) : 0.0;
    std::printf("%s: confusion matrix (rows: true 1, true 0; columns: predicted 1, predicted 0)\n",
                entry.name);
    std::printf("    %5d %5d\n    %5d %5d\n", tp, fn, fp, tn);
    std::printf("%s: precision %.4f recall %.4f TP %d FP %d FN %d TN %d\n", entry.name, precision,
                recall, tp, fp, fn, tn);
  }
  return 0;
}
