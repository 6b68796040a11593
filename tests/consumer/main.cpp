// Calls every kind of focal_native kernel on small deterministic inputs and
// prints inputs, options and results as JSON, for tests/test_cpp.py to repeat
// with the Python API. Exit status 0 when every call returned what was
// expected (Status::ok, or bad_target where a bad label is planted).
#include <focal_native/focal_native.hpp>

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

namespace fn = focal_native;

namespace {

// A deterministic sequence in [0, 1) (64-bit LCG, top 53 bits).
struct Lcg {
  std::uint64_t s = 0x853c49e6748fea9bULL;
  double next() {
    s = s * 6364136223846793005ULL + 1442695040888963407ULL;
    return static_cast<double>(s >> 11) * 0x1p-53;
  }
};

std::string num(double v) {
  char b[64];
  std::snprintf(b, sizeof b, "%.17g", v);
  const std::string s = b;
  if (s == "nan") return "NaN";
  if (s == "inf") return "Infinity";
  if (s == "-inf") return "-Infinity";
  return s;
}

template <class T>
std::string arr(const std::vector<T>& v) {
  std::string s = "[";
  for (std::size_t i = 0; i < v.size(); ++i) {
    if (i) s += ", ";
    s += num(static_cast<double>(v[i]));
  }
  return s + "]";
}

std::string status(const fn::Status& st) {
  return "{\"code\": " + std::to_string(static_cast<int>(st.code)) +
         ", \"index\": " + std::to_string(st.index) + ", \"loss\": " + num(st.loss) +
         ", \"count\": " + std::to_string(st.count) + "}";
}

std::vector<std::string> cases;
bool all_ok = true;

void expect(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "consumer: unexpected status in %s\n", what);
    all_ok = false;
  }
}

}  // namespace

int main() {
  Lcg rng;

  // 1. Binary, hard 0/1 labels (uint8), reduction none: loss, and the gradient
  //    times an upstream gradient.
  {
    std::vector<double> z(12), up(12), loss(12), grad(12);
    std::vector<std::uint8_t> y(12);
    for (std::size_t i = 0; i < z.size(); ++i) {
      z[i] = 16.0 * rng.next() - 8.0;
      y[i] = static_cast<std::uint8_t>(i % 4 == 1 || i % 5 == 0);
      up[i] = 2.0 * rng.next() - 1.0;
    }
    fn::SigmoidOptions o;  // alpha 0.25, gamma 2, reduction none
    const fn::Status s1 = fn::sigmoid_focal_loss(z.data(), y.data(), 12, o, loss.data());
    const fn::Status s2 = fn::sigmoid_focal_loss_grad(z.data(), y.data(), 12, o, grad.data(), up.data());
    expect(s1 && s2, "sigmoid_none");
    cases.push_back("{\"name\": \"sigmoid_none\", \"kind\": \"sigmoid\", \"dtype\": \"float64\", "
                    "\"shape\": [12], \"logits\": " + arr(z) + ", \"targets\": " + arr(y) +
                    ", \"target_dtype\": \"uint8\", \"grad_output\": " + arr(up) +
                    ", \"alpha\": 0.25, \"gamma\": 2.0, \"reduction\": \"none\", "
                    "\"loss\": " + arr(loss) + ", \"grad\": " + arr(grad) + "}");

    // 2. The same inputs, reduction mean, alpha off, gamma 0.5, loss and
    //    gradient fused.
    o.alpha = -1.0;
    o.gamma = 0.5;
    o.reduction = fn::Reduction::mean;
    const fn::Status s3 = fn::sigmoid_focal_loss_with_grad(z.data(), y.data(), 12, o,
                                                           static_cast<double*>(nullptr), grad.data());
    expect(s3 && s3.count == 12, "sigmoid_mean");
    cases.push_back("{\"name\": \"sigmoid_mean\", \"kind\": \"sigmoid\", \"dtype\": \"float64\", "
                    "\"shape\": [12], \"logits\": " + arr(z) + ", \"targets\": " + arr(y) +
                    ", \"target_dtype\": \"uint8\", \"alpha\": null, \"gamma\": 0.5, "
                    "\"reduction\": \"mean\", \"loss\": " + num(s3.loss) + ", \"grad\": " + arr(grad) +
                    ", \"status\": " + status(s3) + "}");
  }

  // 3. Binary, soft targets (float32), reduction sum with a normalizer.
  {
    std::vector<float> z(10), y(10), grad(10);
    for (std::size_t i = 0; i < z.size(); ++i) {
      z[i] = static_cast<float>(10.0 * rng.next() - 5.0);
      y[i] = static_cast<float>(i % 3 == 0 ? 1.0 : rng.next());
    }
    fn::SigmoidOptions o;
    o.alpha = 0.75;
    o.gamma = 1.5;
    o.reduction = fn::Reduction::sum;
    o.normalizer = 4.0;
    const fn::Status s = fn::sigmoid_focal_loss_with_grad(z.data(), y.data(), 10, o,
                                                          static_cast<float*>(nullptr), grad.data());
    expect(s && s.count == 10, "sigmoid_soft_sum");
    cases.push_back("{\"name\": \"sigmoid_soft_sum\", \"kind\": \"sigmoid\", \"dtype\": \"float32\", "
                    "\"shape\": [10], \"logits\": " + arr(z) + ", \"targets\": " + arr(y) +
                    ", \"target_dtype\": \"float32\", \"alpha\": 0.75, \"gamma\": 1.5, "
                    "\"reduction\": \"sum\", \"normalizer\": 4.0, \"loss\": " + num(s.loss) +
                    ", \"grad\": " + arr(grad) + ", \"status\": " + status(s) + "}");
  }

  // 4. Binary with class-index labels (multi-label detection): logits (N=5,
  //    C=3), labels in [0, 3] (3 = background) and ignore_index.
  {
    const fn::ClassLayout lay{5, 3, 1};
    std::vector<double> z(15), loss(15), grad(15);
    for (auto& v : z) v = 12.0 * rng.next() - 6.0;
    const std::vector<std::int64_t> labels = {0, 3, -100, 2, 1};
    fn::SigmoidOptions o;
    o.gamma = 2.0;
    const fn::Status s = fn::sigmoid_focal_loss_with_grad(z.data(), labels.data(), lay, o,
                                                          loss.data(), grad.data());
    expect(s && s.count == 12, "sigmoid_labels");
    cases.push_back("{\"name\": \"sigmoid_labels\", \"kind\": \"sigmoid\", \"dtype\": \"float64\", "
                    "\"shape\": [5, 3], \"logits\": " + arr(z) + ", \"targets\": " + arr(labels) +
                    ", \"target_dtype\": \"int64\", \"target_shape\": [5], \"alpha\": 0.25, "
                    "\"gamma\": 2.0, \"reduction\": \"none\", \"ignore_index\": -100, "
                    "\"loss\": " + arr(loss) + ", \"grad\": " + arr(grad) + "}");
  }

  // 5. Softmax, class indices (int32) on an NCHW layout (N=2, C=3, H*W=4),
  //    per-class alpha, label smoothing, ignore_index -1, reduction none.
  {
    const fn::ClassLayout lay{2, 3, 4};
    std::vector<double> z(24), loss(8), grad(24);
    for (auto& v : z) v = 8.0 * rng.next() - 4.0;
    const std::vector<std::int32_t> labels = {0, 1, 2, -1, 2, 2, 0, 1};
    const double alpha[3] = {0.2, 0.3, 0.5};
    fn::SoftmaxOptions o;
    o.alpha = alpha;
    o.gamma = 2.0;
    o.ignore_index = -1;
    o.label_smoothing = 0.1;
    const fn::Status s = fn::softmax_focal_loss_with_grad(z.data(), labels.data(), lay, o,
                                                          loss.data(), grad.data());
    expect(s && s.count == 7, "softmax_nchw");
    cases.push_back("{\"name\": \"softmax_nchw\", \"kind\": \"softmax\", \"dtype\": \"float64\", "
                    "\"shape\": [2, 3, 4], \"axis\": 1, \"logits\": " + arr(z) +
                    ", \"targets\": " + arr(labels) + ", \"target_dtype\": \"int32\", "
                    "\"target_shape\": [2, 4], \"alpha\": [0.2, 0.3, 0.5], \"gamma\": 2.0, "
                    "\"reduction\": \"none\", \"ignore_index\": -1, \"label_smoothing\": 0.1, "
                    "\"loss\": " + arr(loss) + ", \"grad\": " + arr(grad) + "}");
  }

  // 6. Softmax, dense soft targets (float32 rows), scalar alpha, mean.
  {
    const fn::ClassLayout lay{3, 4, 1};
    std::vector<float> z(12), y(12), grad(12);
    for (auto& v : z) v = static_cast<float>(6.0 * rng.next() - 3.0);
    for (std::size_t r = 0; r < 3; ++r) {
      double tot = 0;
      for (std::size_t k = 0; k < 4; ++k) tot += (y[r * 4 + k] = static_cast<float>(rng.next()));
      for (std::size_t k = 0; k < 4; ++k) y[r * 4 + k] = static_cast<float>(y[r * 4 + k] / tot);
    }
    fn::SoftmaxOptions o;
    o.alpha_scale = 0.25;
    o.gamma = 0.5;
    o.reduction = fn::Reduction::mean;
    const fn::Status s = fn::softmax_focal_loss_with_grad(z.data(), y.data(), lay, o,
                                                          static_cast<float*>(nullptr), grad.data());
    expect(s && s.count == 3, "softmax_dense_mean");
    cases.push_back("{\"name\": \"softmax_dense_mean\", \"kind\": \"softmax\", \"dtype\": \"float32\", "
                    "\"shape\": [3, 4], \"axis\": -1, \"logits\": " + arr(z) + ", \"targets\": " +
                    arr(y) + ", \"target_dtype\": \"float32\", \"alpha\": 0.25, \"gamma\": 0.5, "
                    "\"reduction\": \"mean\", \"loss\": " + num(s.loss) + ", \"grad\": " + arr(grad) +
                    ", \"status\": " + status(s) + "}");
  }

  // 7. A bad label: Status::bad_target with the index of the first one.
  {
    const std::vector<double> z(12, 0.0);
    std::vector<double> loss(4);
    const std::vector<std::int32_t> labels = {0, 7, 1, 9};
    const fn::Status s = fn::softmax_focal_loss(z.data(), labels.data(), {4, 3, 1},
                                                fn::SoftmaxOptions{}, loss.data());
    expect(!s && s.code == fn::Status::bad_target && s.index == 1, "softmax_bad_label");
    cases.push_back("{\"name\": \"softmax_bad_label\", \"kind\": \"error\", \"status\": " + status(s) + "}");
  }

  std::printf("{\"version\": \"%s\", \"openmp\": %s, \"threads\": %d, \"cases\": [\n",
              FOCAL_NATIVE_VERSION, fn::has_openmp() ? "true" : "false", fn::get_num_threads());
  for (std::size_t i = 0; i < cases.size(); ++i)
    std::printf("  %s%s\n", cases[i].c_str(), i + 1 < cases.size() ? "," : "");
  std::printf("]}\n");
  return all_ok ? 0 : 1;
}
