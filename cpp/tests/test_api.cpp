// The API around the kernels: Status and the first bad index, option
// checking, empty inputs, in-place gradients, threads (bitwise-identical
// results for any thread count), fork safety, version macros, ClassLayout.
#include <focal_native/focal_native.hpp>

#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#if defined(__unix__) || defined(__APPLE__)
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>
#define FN_TEST_HAVE_FORK 1
#else
#define FN_TEST_HAVE_FORK 0
#endif

#include "check.hpp"
#include "instantiations.hpp"
#include "testdata.hpp"

namespace fn = focal_native;

namespace {

template <class T>
bool same_bits(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
}

bool same_bits(double a, double b) { return std::memcmp(&a, &b, sizeof a) == 0; }

// ---------------------------------------------------------------------------
// Version and plain types.

static_assert(fn::ClassLayout{2, 3, 4}.positions() == 8, "positions = outer * inner");
static_assert(fn::ClassLayout{2, 3, 4}.elements() == 24, "elements = outer * classes * inner");
static_assert(static_cast<int>(fn::Reduction::none) == 0 && static_cast<int>(fn::Reduction::mean) == 1 &&
                  static_cast<int>(fn::Reduction::sum) == 2,
              "Reduction values are part of the ABI of the bindings");

FN_TEST(version_macros_agree) {
  const std::string v = std::to_string(FOCAL_NATIVE_VERSION_MAJOR) + "." +
                        std::to_string(FOCAL_NATIVE_VERSION_MINOR) + "." +
                        std::to_string(FOCAL_NATIVE_VERSION_PATCH);
  CHECK_MSG(v == FOCAL_NATIVE_VERSION, "%s vs %s", v.c_str(), FOCAL_NATIVE_VERSION);
}

FN_TEST(status_defaults_and_bool) {
  fn::Status s;
  CHECK(s.code == fn::Status::ok && s.index == -1 && s.loss == 0.0 && s.count == 0);
  CHECK(static_cast<bool>(s));
  s.code = fn::Status::bad_target;
  CHECK(!s);
  fn::SigmoidOptions so;
  CHECK(so.alpha == 0.25 && so.gamma == 2.0 && so.reduction == fn::Reduction::none &&
        so.normalizer == 1.0 && so.ignore_index == -100);
  fn::SoftmaxOptions mo;
  CHECK(mo.alpha == nullptr && mo.alpha_scale == 1.0 && mo.gamma == 2.0 &&
        mo.reduction == fn::Reduction::none && mo.normalizer == 1.0 && mo.ignore_index == -100 &&
        mo.label_smoothing == 0.0);
}

// ---------------------------------------------------------------------------
// Bad targets: the lowest flat index, whatever the thread count and however
// many bad values follow.

template <class Fn>
void for_thread_counts(Fn&& f) {
  for (int t : {1, 2, 3}) {
    fn::set_num_threads(t);
    f(t);
  }
  fn::set_num_threads(0);
}

FN_TEST(bad_target_first_index_elementwise) {
  const std::int64_t n = 300000;  // many blocks, threaded when OpenMP is on
  std::vector<double> z(static_cast<std::size_t>(n), 0.25);
  for (std::int64_t bad : {std::int64_t{0}, std::int64_t{4097}, std::int64_t{150001}, n - 1}) {
    std::vector<std::uint8_t> y(static_cast<std::size_t>(n), 1);
    std::vector<double> ys(static_cast<std::size_t>(n), 0.5);
    std::vector<std::int32_t> yi(static_cast<std::size_t>(n), 0);
    y[static_cast<std::size_t>(bad)] = 2;
    ys[static_cast<std::size_t>(bad)] = 1.5;
    yi[static_cast<std::size_t>(bad)] = -1;
    // Later bad values, including in other blocks.
    for (std::int64_t j = bad + 1; j < n; j += 20011) {
      y[static_cast<std::size_t>(j)] = 7;
      ys[static_cast<std::size_t>(j)] = std::numeric_limits<double>::quiet_NaN();
      yi[static_cast<std::size_t>(j)] = 3;
    }
    for_thread_counts([&](int t) {
      std::vector<double> out(static_cast<std::size_t>(n));
      fn::SigmoidOptions o;
      fn::Status s = fn::sigmoid_focal_loss(z.data(), y.data(), n, o, out.data());
      CHECK_MSG(s.code == fn::Status::bad_target && s.index == bad, "uint8 bad at %lld: code %d index %lld threads %d",
                static_cast<long long>(bad), static_cast<int>(s.code), static_cast<long long>(s.index), t);
      o.reduction = fn::Reduction::mean;
      s = fn::sigmoid_focal_loss_grad(z.data(), ys.data(), n, o, out.data());
      CHECK_MSG(s.code == fn::Status::bad_target && s.index == bad, "soft bad at %lld: index %lld threads %d",
                static_cast<long long>(bad), static_cast<long long>(s.index), t);
      s = fn::sigmoid_focal_loss_with_grad(z.data(), yi.data(), n, o, fntest::no_output<double>, out.data());
      CHECK_MSG(s.code == fn::Status::bad_target && s.index == bad, "int32 bad at %lld: index %lld threads %d",
                static_cast<long long>(bad), static_cast<long long>(s.index), t);
      CHECK(!s);
    });
  }
}

FN_TEST(bad_target_soft_values) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  for (double v : {-0.5, 1.0000001, nan, inf, -inf, -1e-300}) {
    const std::vector<double> z = {0.1, 0.2, 0.3};
    const std::vector<double> y = {0.5, v, 0.0};
    std::vector<double> l(3);
    const fn::Status s = fn::sigmoid_focal_loss(z.data(), y.data(), 3, fn::SigmoidOptions{}, l.data());
    CHECK_MSG(s.code == fn::Status::bad_target && s.index == 1, "y=%g: code %d index %lld", v,
              static_cast<int>(s.code), static_cast<long long>(s.index));
  }
  // -0.0 is a valid 0 (and exactly the hard negative).
  const std::vector<double> z = {0.1};
  const std::vector<double> y = {-0.0};
  std::vector<double> l(1);
  CHECK(fn::sigmoid_focal_loss(z.data(), y.data(), 1, fn::SigmoidOptions{}, l.data()));
}

FN_TEST(bad_target_labels) {
  const fn::ClassLayout rows{5000, 4, 1};
  const fn::ClassLayout nchw{3, 4, 2000};
  for (fn::ClassLayout lay : {rows, nchw}) {
    const auto npos = static_cast<std::size_t>(lay.positions());
    std::vector<float> z(static_cast<std::size_t>(lay.elements()), 0.5f);
    for (std::int64_t bad : {std::int64_t{0}, std::int64_t{2049}, lay.positions() - 1}) {
      for (std::int64_t v : {std::int64_t{5}, std::int64_t{-1}, std::int64_t{-101}}) {
        std::vector<std::int64_t> lab(npos, 4);  // 4 == classes: background, valid for sigmoid
        lab[1] = -100;                           // ignored
        lab[static_cast<std::size_t>(bad)] = v;
        if (bad + 7 < lay.positions()) lab[static_cast<std::size_t>(bad + 7)] = 99;
        for_thread_counts([&](int t) {
          std::vector<float> g(z.size());
          const fn::Status s = fn::sigmoid_focal_loss_grad(z.data(), lab.data(), lay, fn::SigmoidOptions{}, g.data());
          CHECK_MSG(s.code == fn::Status::bad_target && s.index == bad,
                    "sigmoid label %lld at %lld: code %d index %lld threads %d", static_cast<long long>(v),
                    static_cast<long long>(bad), static_cast<int>(s.code), static_cast<long long>(s.index), t);
        });
      }
    }
    // Softmax: the label `classes` is out of range too.
    std::vector<std::int64_t> lab(npos, 0);
    lab[1] = -100;
    lab[npos / 2] = 4;
    lab[npos - 1] = -3;
    std::vector<float> l(npos);
    const fn::Status s = fn::softmax_focal_loss(z.data(), lab.data(), lay, fn::SoftmaxOptions{}, l.data());
    CHECK_MSG(s.code == fn::Status::bad_target && s.index == static_cast<std::int64_t>(npos / 2),
              "softmax: code %d index %lld", static_cast<int>(s.code), static_cast<long long>(s.index));
  }
  // Unsigned labels beyond int64 and an 8-bit ignore_index.
  {
    const std::vector<double> z(6, 0.0);
    const std::vector<std::uint64_t> lab = {0, std::numeric_limits<std::uint64_t>::max()};
    std::vector<double> l(6);
    const fn::Status s = fn::sigmoid_focal_loss(z.data(), lab.data(), {2, 3, 1}, fn::SigmoidOptions{}, l.data());
    CHECK(s.code == fn::Status::bad_target && s.index == 1);
    const std::vector<float> zf(6, 0.0f);
    std::vector<float> lf(2);
    const std::vector<std::uint8_t> lab8 = {255, 2};
    fn::SoftmaxOptions so;
    so.ignore_index = 255;
    fn::Status s2 = fn::softmax_focal_loss(zf.data(), lab8.data(), {2, 3, 1}, so, lf.data());
    CHECK(s2.code == fn::Status::ok && s2.count == 1 && lf[0] == 0.0f);
    so.ignore_index = -100;  // now 255 is just a bad label
    s2 = fn::softmax_focal_loss(zf.data(), lab8.data(), {2, 3, 1}, so, lf.data());
    CHECK(s2.code == fn::Status::bad_target && s2.index == 0);
  }
}

// A call whose gradient goes in place over the logits checks its targets
// before it writes: when one is bad, the logits (and every other output) are
// left exactly as they were, and the index is the one an out-of-place call
// reports.
template <class Call>
void check_failed_in_place(const char* what, std::vector<float> z, std::int64_t want, Call&& call) {
  const std::vector<float> before = z;
  for_thread_counts([&](int t) {
    std::vector<float> loss(z.size(), 42.0f);
    const fn::Status s = call(z.data(), z.data(), loss.data());
    CHECK_MSG(s.code == fn::Status::bad_target && s.index == want, "%s: code %d index %lld (want %lld) threads %d",
              what, static_cast<int>(s.code), static_cast<long long>(s.index), static_cast<long long>(want), t);
    CHECK_MSG(std::memcmp(z.data(), before.data(), z.size() * sizeof(float)) == 0, "%s: logits written, threads %d",
              what, t);
    bool loss_kept = true;
    for (float v : loss) loss_kept = loss_kept && v == 42.0f;
    CHECK_MSG(loss_kept, "%s: loss output written, threads %d", what, t);
    // Out of place: the same index (found by the kernel's own pass).
    std::vector<float> g(z.size());
    const fn::Status s2 = call(z.data(), g.data(), loss.data());
    CHECK_MSG(s2.code == fn::Status::bad_target && s2.index == want, "%s out of place: index %lld threads %d", what,
              static_cast<long long>(s2.index), t);
  });
}

FN_TEST(failed_in_place_calls_write_nothing) {
  const std::int64_t n = 300000;
  std::vector<float> z(static_cast<std::size_t>(n));
  for (std::int64_t i = 0; i < n; ++i) z[static_cast<std::size_t>(i)] = static_cast<float>((i % 97) - 48) * 0.125f;
  fn::SigmoidOptions so;
  fn::SoftmaxOptions mo;
  for (std::int64_t bad : {std::int64_t{0}, std::int64_t{4097}, std::int64_t{150001}, n - 1}) {
    const auto b = static_cast<std::size_t>(bad);
    std::vector<std::uint8_t> y8(static_cast<std::size_t>(n), 1);
    std::vector<float> ys(static_cast<std::size_t>(n), 0.5f);
    y8[b] = 2;
    ys[b] = std::numeric_limits<float>::quiet_NaN();
    if (bad + 3 < n) y8[b + 3] = 9;
    check_failed_in_place("sigmoid uint8", z, bad, [&](const float* zz, float* g, float* l) {
      return fn::sigmoid_focal_loss_with_grad(zz, y8.data(), n, so, l, g);
    });
    check_failed_in_place("sigmoid soft", z, bad, [&](const float* zz, float* g, float*) {
      return fn::sigmoid_focal_loss_grad(zz, ys.data(), n, so, g);
    });
  }
  // Class indices (rows, NCHW, short rows) and dense targets. z has 300000
  // elements: 3750 rows of 80, 3 x 4 x 25000, 30000 rows of 10.
  for (fn::ClassLayout lay : {fn::ClassLayout{3750, 80, 1}, fn::ClassLayout{3, 4, 25000}, fn::ClassLayout{30000, 10, 1}}) {
    const std::int64_t np = lay.positions();
    for (std::int64_t bad : {std::int64_t{0}, np / 2 + 1, np - 1}) {
      std::vector<std::int64_t> lab(static_cast<std::size_t>(np), 1);
      lab[static_cast<std::size_t>(bad)] = lay.classes + 5;
      check_failed_in_place("sigmoid labels", z, bad, [&](const float* zz, float* g, float* l) {
        return fn::sigmoid_focal_loss_with_grad(zz, lab.data(), lay, so, l, g);
      });
      lab[static_cast<std::size_t>(bad)] = lay.classes;  // background for sigmoid, bad for softmax
      check_failed_in_place("softmax labels", z, bad, [&](const float* zz, float* g, float* l) {
        return fn::softmax_focal_loss_with_grad(zz, lab.data(), lay, mo, l, g);
      });
    }
    std::vector<float> d(z.size(), 0.0f);
    const std::int64_t flat = lay.elements() / 3 + 7;
    d[static_cast<std::size_t>(flat)] = -0.25f;
    d[static_cast<std::size_t>(lay.elements() - 1)] = 2.0f;
    check_failed_in_place("softmax dense", z, flat, [&](const float* zz, float* g, float*) {
      return fn::softmax_focal_loss_grad(zz, d.data(), lay, mo, g);
    });
  }
}

FN_TEST(bad_target_dense_lowest_flat_index) {
  // NCHW dense targets: the lowest flat index into the targets array, even
  // when a bad value at a lower *position* sits at a higher flat index.
  const fn::ClassLayout lay{2, 3, 50};
  std::vector<double> z(300, 0.0), y(300, 0.0);
  for (std::int64_t p = 0; p < 100; ++p) y[static_cast<std::size_t>((p / 50 * 3) * 50 + p % 50)] = 1.0;
  y[2 * 50 + 10] = 2.0;  // (o=0, k=2, i=10): flat 110
  y[0 * 50 + 40] = -1.0; // (o=0, k=0, i=40): flat 40, position 40
  y[160] = 1.5;
  std::vector<double> l(100);
  const fn::Status s = fn::softmax_focal_loss(z.data(), y.data(), lay, fn::SoftmaxOptions{}, l.data());
  CHECK_MSG(s.code == fn::Status::bad_target && s.index == 40, "index %lld", static_cast<long long>(s.index));
  y[40] = 0.0;
  const fn::Status s2 = fn::softmax_focal_loss(z.data(), y.data(), lay, fn::SoftmaxOptions{}, l.data());
  CHECK_MSG(s2.code == fn::Status::bad_target && s2.index == 110, "index %lld", static_cast<long long>(s2.index));
}

// ---------------------------------------------------------------------------
// Options out of range: Status::bad_argument, nothing written.

FN_TEST(bad_arguments_sigmoid) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  const std::vector<double> z = {0.5, -0.5};
  const std::vector<std::uint8_t> y = {1, 0};
  auto expect_bad = [&](fn::SigmoidOptions o, const char* what) {
    std::vector<double> l(2, 42.0), g(2, 42.0);
    const fn::Status s = fn::sigmoid_focal_loss_with_grad(z.data(), y.data(), 2, o, l.data(), g.data());
    CHECK_MSG(s.code == fn::Status::bad_argument, "%s: code %d", what, static_cast<int>(s.code));
    CHECK_MSG(l[0] == 42.0 && g[0] == 42.0, "%s: outputs written", what);
  };
  fn::SigmoidOptions o;
  o.gamma = -0.5; expect_bad(o, "gamma < 0");
  o.gamma = nan; expect_bad(o, "gamma NaN");
  o.gamma = inf; expect_bad(o, "gamma inf");
  o = {}; o.alpha = 1.5; expect_bad(o, "alpha > 1");
  o = {}; o.alpha = nan; expect_bad(o, "alpha NaN");
  o = {}; o.normalizer = 0.0; expect_bad(o, "normalizer 0");
  o = {}; o.normalizer = -1.0; expect_bad(o, "normalizer < 0");
  o = {}; o.normalizer = inf; expect_bad(o, "normalizer inf");
  o = {}; o.normalizer = nan; expect_bad(o, "normalizer NaN");
  // In range: alpha in [0, 1] or negative (no weighting), any gamma >= 0.
  for (double a : {0.0, 1.0, -1.0, -1e300}) {
    o = {};
    o.alpha = a;
    std::vector<double> l(2);
    CHECK_MSG(fn::sigmoid_focal_loss(z.data(), y.data(), 2, o, l.data()), "alpha %g", a);
  }
  o = {};
  o.gamma = 1e300;
  std::vector<double> l(2);
  CHECK(fn::sigmoid_focal_loss(z.data(), y.data(), 2, o, l.data()));
}

FN_TEST(bad_arguments_softmax) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const std::vector<double> z = {0.5, -0.5, 1.0, 0.0};
  const std::vector<std::int64_t> lab = {1, 0};
  auto expect_bad = [&](fn::SoftmaxOptions o, fn::ClassLayout lay, const char* what) {
    std::vector<double> l(2, 42.0);
    const fn::Status s = fn::softmax_focal_loss(z.data(), lab.data(), lay, o, l.data());
    CHECK_MSG(s.code == fn::Status::bad_argument, "%s: code %d", what, static_cast<int>(s.code));
    CHECK_MSG(l[0] == 42.0, "%s: output written", what);
  };
  const fn::ClassLayout lay{2, 2, 1};
  fn::SoftmaxOptions o;
  o.gamma = -1.0; expect_bad(o, lay, "gamma < 0");
  o = {}; o.gamma = nan; expect_bad(o, lay, "gamma NaN");
  o = {}; o.alpha_scale = -0.1; expect_bad(o, lay, "alpha_scale < 0");
  const double bad_alpha[2] = {1.0, -0.5};
  o = {}; o.alpha = bad_alpha; expect_bad(o, lay, "alpha[1] < 0");
  const double nan_alpha[2] = {nan, 1.0};
  o = {}; o.alpha = nan_alpha; expect_bad(o, lay, "alpha[0] NaN");
  o = {}; o.label_smoothing = 1.0; expect_bad(o, lay, "label_smoothing 1");
  o = {}; o.label_smoothing = -0.1; expect_bad(o, lay, "label_smoothing < 0");
  o = {}; o.normalizer = 0.0; expect_bad(o, lay, "normalizer 0");
  o = {}; expect_bad(o, {2, 0, 1}, "zero classes with positions");
  o = {}; expect_bad(o, {-2, 2, 1}, "negative outer");
}

// ---------------------------------------------------------------------------
// Empty inputs.

FN_TEST(empty_inputs) {
  fn::SigmoidOptions o;
  for (fn::Reduction r : {fn::Reduction::none, fn::Reduction::mean, fn::Reduction::sum}) {
    o.reduction = r;
    const fn::Status s = fn::sigmoid_focal_loss_with_grad<double, std::uint8_t>(nullptr, nullptr, 0, o, nullptr, nullptr);
    CHECK(s.code == fn::Status::ok && s.count == 0);
    if (r == fn::Reduction::mean) CHECK(std::isnan(s.loss));
    else CHECK(s.loss == 0.0);
    fn::SoftmaxOptions so;
    so.reduction = r;
    const fn::Status s2 = fn::softmax_focal_loss_with_grad<float, std::int64_t>(nullptr, nullptr, {0, 3, 1}, so, nullptr, nullptr);
    CHECK(s2.code == fn::Status::ok && s2.count == 0);
    const fn::Status s3 = fn::softmax_focal_loss<float, std::int64_t>(nullptr, nullptr, {0, 0, 1}, so, nullptr);
    CHECK(s3.code == fn::Status::ok);
  }
}

// ---------------------------------------------------------------------------
// The gradient may overwrite the logits.

FN_TEST(gradient_in_place) {
  fntest::Rng rng(501);
  {
    const std::vector<double> z = fntest::random_logits<double>(rng, 5000);
    std::vector<std::uint8_t> y(z.size());
    for (auto& v : y) v = static_cast<std::uint8_t>(rng.uniform() < 0.3);
    fn::SigmoidOptions o;
    o.reduction = fn::Reduction::mean;
    std::vector<double> g(z.size()), inplace = z;
    const fn::Status a = fn::sigmoid_focal_loss_with_grad(z.data(), y.data(), 5000, o, fntest::no_output<double>, g.data());
    const fn::Status b = fn::sigmoid_focal_loss_with_grad(inplace.data(), y.data(), 5000, o, fntest::no_output<double>, inplace.data());
    CHECK(a && b && same_bits(a.loss, b.loss) && same_bits(g, inplace));
  }
  for (fn::ClassLayout lay : {fn::ClassLayout{300, 7, 1}, fn::ClassLayout{3, 7, 100}}) {
    std::vector<float> z(static_cast<std::size_t>(lay.elements()));
    for (auto& v : z) v = static_cast<float>(rng.uniform(-20.0, 20.0));
    std::vector<std::int64_t> lab(static_cast<std::size_t>(lay.positions()));
    for (auto& v : lab) v = rng.below(7);
    std::vector<float> yd(z.size(), 0.0f);
    for (std::int64_t p = 0; p < lay.positions(); ++p)
      yd[static_cast<std::size_t>((p / lay.inner * 7 + lab[static_cast<std::size_t>(p)]) * lay.inner + p % lay.inner)] = 1.0f;
    for (double eps : {0.0, 0.2}) {
      fn::SoftmaxOptions o;
      o.label_smoothing = eps;
      std::vector<float> g(z.size()), inplace = z;
      CHECK(fn::softmax_focal_loss_grad(z.data(), lab.data(), lay, o, g.data()));
      CHECK(fn::softmax_focal_loss_grad(inplace.data(), lab.data(), lay, o, inplace.data()));
      CHECK_MSG(same_bits(g, inplace), "softmax index eps=%g inner=%lld", eps, static_cast<long long>(lay.inner));
    }
    std::vector<float> g(z.size()), inplace = z;
    CHECK(fn::softmax_focal_loss_grad(z.data(), yd.data(), lay, fn::SoftmaxOptions{}, g.data()));
    CHECK(fn::softmax_focal_loss_grad(inplace.data(), yd.data(), lay, fn::SoftmaxOptions{}, inplace.data()));
    CHECK_MSG(same_bits(g, inplace), "softmax dense inner=%lld", static_cast<long long>(lay.inner));
  }
}

// ---------------------------------------------------------------------------
// Threads.

FN_TEST(thread_settings) {
  if (fn::has_openmp()) {
    fn::set_num_threads(3);
    CHECK(fn::get_num_threads() == 3);
    fn::set_num_threads(1);
    CHECK(fn::get_num_threads() == 1);
    fn::set_num_threads(0);
    CHECK(fn::get_num_threads() >= 1);
    fn::set_num_threads(-4);  // <= 0: the default again
    CHECK(fn::get_num_threads() >= 1);
  } else {
    fn::set_num_threads(4);
    CHECK(fn::get_num_threads() == 1);
    fn::set_num_threads(0);
    CHECK(fn::get_num_threads() == 1);
  }
}

// Every output and every reduced loss is bitwise the same for 1, 2, 3, 4 threads.
FN_TEST(results_identical_for_any_thread_count) {
  fntest::Rng rng(601);
  const std::int64_t n = 200000;
  const std::vector<double> z = fntest::random_logits<double>(rng, static_cast<std::size_t>(n));
  std::vector<float> zf(z.begin(), z.end());
  std::vector<std::uint8_t> y(z.size());
  for (auto& v : y) v = static_cast<std::uint8_t>(rng.uniform() < 0.2);
  const fn::ClassLayout lay{n / 8, 8, 1}, nchw{4, 8, n / 32};
  std::vector<std::int64_t> lab(static_cast<std::size_t>(lay.positions()));
  for (auto& v : lab) v = rng.below(8);
  struct Run {
    std::vector<double> sig_loss, sig_grad, lab_grad, smx_loss, smx_grad, nchw_grad;
    std::vector<float> f_grad;
    double sig_mean, lab_sum, smx_mean, nchw_sum;
  };
  auto run = [&](int threads) {
    fn::set_num_threads(threads);
    Run r;
    r.sig_loss.resize(z.size());
    r.sig_grad.resize(z.size());
    r.lab_grad.resize(z.size());
    r.smx_grad.resize(z.size());
    r.nchw_grad.resize(z.size());
    r.f_grad.resize(z.size());
    r.smx_loss.resize(lab.size());
    fn::SigmoidOptions so;
    so.gamma = 1.5;
    CHECK(fn::sigmoid_focal_loss_with_grad(z.data(), y.data(), n, so, r.sig_loss.data(), r.sig_grad.data()));
    so.reduction = fn::Reduction::mean;
    r.sig_mean = fn::sigmoid_focal_loss(z.data(), y.data(), n, so, fntest::no_output<double>).loss;
    CHECK(fn::sigmoid_focal_loss_grad(zf.data(), y.data(), n, so, r.f_grad.data()));
    so.reduction = fn::Reduction::sum;
    const fn::Status ls = fn::sigmoid_focal_loss_with_grad(z.data(), lab.data(), lay, so, fntest::no_output<double>, r.lab_grad.data());
    r.lab_sum = ls.loss;
    fn::SoftmaxOptions mo;
    CHECK(fn::softmax_focal_loss(z.data(), lab.data(), lay, mo, r.smx_loss.data()));
    mo.reduction = fn::Reduction::mean;
    r.smx_mean = fn::softmax_focal_loss_with_grad(z.data(), lab.data(), lay, mo, fntest::no_output<double>, r.smx_grad.data()).loss;
    mo.reduction = fn::Reduction::sum;
    mo.label_smoothing = 0.1;
    r.nchw_sum = fn::softmax_focal_loss_with_grad(z.data(), lab.data(), nchw, mo, fntest::no_output<double>, r.nchw_grad.data()).loss;
    return r;
  };
  const Run one = run(1);
  for (int t : {2, 3, 4}) {
    const Run r = run(t);
    CHECK_MSG(same_bits(one.sig_loss, r.sig_loss) && same_bits(one.sig_grad, r.sig_grad), "sigmoid, %d threads", t);
    CHECK_MSG(same_bits(one.sig_mean, r.sig_mean), "sigmoid mean, %d threads: %.17g vs %.17g", t, one.sig_mean, r.sig_mean);
    CHECK_MSG(same_bits(one.f_grad, r.f_grad), "sigmoid float grad, %d threads", t);
    CHECK_MSG(same_bits(one.lab_grad, r.lab_grad) && same_bits(one.lab_sum, r.lab_sum), "sigmoid labels, %d threads", t);
    CHECK_MSG(same_bits(one.smx_loss, r.smx_loss) && same_bits(one.smx_grad, r.smx_grad) &&
                  same_bits(one.smx_mean, r.smx_mean), "softmax, %d threads", t);
    CHECK_MSG(same_bits(one.nchw_grad, r.nchw_grad) && same_bits(one.nchw_sum, r.nchw_sum), "softmax nchw, %d threads", t);
  }
  fn::set_num_threads(0);
}

#if FN_TEST_HAVE_FORK
// A child forked after the parent used threads still computes (serially)
// instead of waiting forever on the parent's OpenMP pool.
FN_TEST(fork_after_threads) {
  const std::int64_t n = 400000;
  std::vector<double> z(static_cast<std::size_t>(n), 0.3), l(static_cast<std::size_t>(n));
  std::vector<std::uint8_t> y(static_cast<std::size_t>(n), 1);
  fn::SigmoidOptions o;
  o.reduction = fn::Reduction::sum;
  fn::set_num_threads(2);
  const double parent = fn::sigmoid_focal_loss(z.data(), y.data(), n, o, fntest::no_output<double>).loss;
  std::fflush(stdout);
  const pid_t pid = fork();
  if (pid == 0) {
    alarm(20);  // a hang is a failure, not a stuck test run
    const fn::Status s = fn::sigmoid_focal_loss(z.data(), y.data(), n, o, fntest::no_output<double>);
    const bool ok = s && same_bits(s.loss, parent) && (!fn::has_openmp() || fn::get_num_threads() == 1);
    _exit(ok ? 0 : 3);
  }
  CHECK(pid > 0);
  int status = 0;
  CHECK(waitpid(pid, &status, 0) == pid);
  CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %d", status);
  fn::set_num_threads(0);
}
#endif

}  // namespace
