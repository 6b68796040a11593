// Multiclass (softmax) kernels against the long double reference: class-index
// targets (int64, int32, uint8; rows and NCHW layouts; ignore_index; per-class
// and scalar alpha), label smoothing, dense targets (one-hot, smoothed, soft);
// loss, gradient and fused; float and double; reductions, normalizer and
// upstream gradient.
#include <focal_native/focal_native.hpp>

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

#include "check.hpp"
#include "instantiations.hpp"
#include "kernel_check.hpp"
#include "reference.hpp"
#include "testdata.hpp"

namespace fn = focal_native;
using fntest::Expect;
using fntest::LD;

namespace {

// Class indices: <= 8 ulps (issue 5). Dense targets and label smoothing: the
// gradient y_j F_j (1 - p_j) - p_j sum_{k != j} y_k F_k is a difference and is
// measured in ulps of the larger term; the loss is a sum of terms that each
// carry the error of (1 - p_k)^gamma.
constexpr LD kIndex = 8;
constexpr LD kDense = 24;

// The gap issue (d_k = z_k - m rounded before exp, amplified |d_k|-fold) is
// fixed: the kernels keep d_k exact (TwoSum) and use exp(hi) (1 + lo). The
// allowance machinery stays for a future regression hunt, switched off.
constexpr bool kGapAllowance = false;

// float64 above gamma = 3: S_o = the sum of exponentials carries ~1 ulp of
// rounding, and q^gamma with q = S_o / S multiplies it by gamma, which alone
// exceeds the 8-ulp budget in the last ulp or two (measured: 9.8 ulp at
// gamma = 5). The documented bound for float64 softmax is 8 + 2 (gamma - 3)
// there. (Rows won by 708 or more once needed a further allowance here: the
// exponentials below DBL_MIN were flushed although S_o itself was tiny. The
// kernels now sum those scaled by 2^K: softmax_rows_won_by_700 below.)
template <class T>
LD gamma_extra(double gamma) {
  if (!std::is_same_v<T, double>) return 0;
  return gamma > 3 ? 2 * (static_cast<LD>(gamma) - 3) : 0;
}

template <class T>
LD gap_allowance(const std::vector<LD>& row, double gamma) {
  if (!kGapAllowance || !std::is_same_v<T, double>) return 0;
  LD m = row[0], lo = row[0];
  for (LD v : row) {
    m = v > m ? v : m;
    lo = v < lo ? v : lo;
  }
  LD d = m - lo;
  if (d > 745) d = 745;
  return (2 + static_cast<LD>(gamma)) * d;
}

// Row k of position (o, i) in a (outer, classes, inner) layout.
std::size_t at(fn::ClassLayout lay, std::int64_t o, std::int64_t k, std::int64_t i) {
  return static_cast<std::size_t>((o * lay.classes + k) * lay.inner + i);
}

template <class T>
std::vector<LD> row_of(const std::vector<T>& z, fn::ClassLayout lay, std::int64_t o,
                       std::int64_t i) {
  std::vector<LD> r(static_cast<std::size_t>(lay.classes));
  for (std::int64_t k = 0; k < lay.classes; ++k) r[static_cast<std::size_t>(k)] = z[at(lay, o, k, i)];
  return r;
}

std::vector<LD> class_alphas(const fn::SoftmaxOptions& o, std::int64_t C) {
  std::vector<LD> a(static_cast<std::size_t>(C));
  for (std::int64_t k = 0; k < C; ++k)
    a[static_cast<std::size_t>(k)] = (o.alpha ? static_cast<LD>(o.alpha[k]) : 1.0L) * o.alpha_scale;
  return a;
}

// targets: class indices (Y integral) or dense (Y floating, the logits' layout).
template <class T, class Y>
Expect reference(const std::vector<T>& z, const std::vector<Y>& y, fn::ClassLayout lay,
                 const fn::SoftmaxOptions& o, std::int64_t* counted) {
  Expect e;
  e.loss.assign(static_cast<std::size_t>(lay.positions()), 0);
  e.grad.assign(z.size(), 0);
  e.gscale.assign(z.size(), 0);
  e.allow_loss.assign(e.loss.size(), 0);
  e.allow_grad.assign(z.size(), 0);
  e.extra_loss.assign(e.loss.size(), 0);
  e.extra_grad.assign(z.size(), 0);
  if (kGapAllowance && std::is_same_v<T, double>) fntest::allowance_granted() = true;
  *counted = 0;
  const std::vector<LD> alpha = class_alphas(o, lay.classes);
  const auto C = static_cast<std::size_t>(lay.classes);
  for (std::int64_t oi = 0; oi < lay.outer; ++oi)
    for (std::int64_t i = 0; i < lay.inner; ++i) {
      const auto pos = static_cast<std::size_t>(oi * lay.inner + i);
      const std::vector<LD> row = row_of(z, lay, oi, i);
      const LD allow = gap_allowance<T>(row, o.gamma);
      const LD extra = gamma_extra<T>(o.gamma);
      e.allow_loss[pos] = allow;
      e.extra_loss[pos] = extra;
      fnref::SoftmaxResult r;
      if constexpr (std::is_floating_point_v<Y>) {
        std::vector<LD> yk(C);
        for (std::size_t k = 0; k < C; ++k) yk[k] = y[at(lay, oi, static_cast<std::int64_t>(k), i)];
        r = fnref::softmax_dense(row, yk, alpha, o.gamma);
      } else {
        const auto c = static_cast<std::int64_t>(y[pos]);
        if (c == o.ignore_index) continue;
        if (o.label_smoothing > 0) {
          const LD eps = o.label_smoothing;
          std::vector<LD> yk(C, eps / static_cast<LD>(C));
          yk[static_cast<std::size_t>(c)] = (1 - eps) + eps / static_cast<LD>(C);
          r = fnref::softmax_dense(row, yk, alpha, o.gamma);
        } else {
          r = fnref::softmax_index(row, static_cast<std::size_t>(c), alpha, o.gamma);
        }
      }
      ++*counted;
      e.loss[pos] = r.loss;
      for (std::size_t k = 0; k < C; ++k) {
        const std::size_t j = at(lay, oi, static_cast<std::int64_t>(k), i);
        e.grad[j] = r.grad[k];
        e.gscale[j] = r.gscale[k];
        e.allow_grad[j] = allow;
        e.extra_grad[j] = extra;
      }
    }
  return e;
}

// Logits with a row structure: a random row "center" plus per-class offsets,
// so that rows range from near-uniform to a winner by thousands.
template <class T>
std::vector<T> softmax_logits(fntest::Rng& rng, fn::ClassLayout lay) {
  std::vector<T> z(static_cast<std::size_t>(lay.elements()));
  for (std::int64_t o = 0; o < lay.outer; ++o)
    for (std::int64_t i = 0; i < lay.inner; ++i) {
      const double u = rng.uniform();
      const double spread = u < 0.3 ? 1.0 : u < 0.6 ? 20.0 : u < 0.8 ? 300.0 : 1e4;
      const double center = rng.uniform() < 0.5 ? 0.0 : fntest::random_logit(rng);
      for (std::int64_t k = 0; k < lay.classes; ++k) {
        double v = center + rng.uniform(-spread, spread);
        if (rng.uniform() < 0.05) v = fntest::random_logit(rng);
        if (v > 1e4) v = 1e4;
        if (v < -1e4) v = -1e4;
        z[at(lay, o, k, i)] = static_cast<T>(v);
      }
    }
  return z;
}

struct OptCase {
  double gamma;
  bool per_class_alpha;
  double alpha_scale;
};

std::vector<OptCase> option_cases() {
  std::vector<OptCase> v;
  std::size_t n = 0;
  for (double g : fntest::gammas()) {
    ++n;
    v.push_back({g, n % 3 == 1, n % 3 == 2 ? 0.25 : 1.0});
  }
  return v;
}

template <class T, class Y>
void run_case(const std::string& tag, fn::ClassLayout lay, const std::vector<T>& z,
              const std::vector<Y>& y, fn::SoftmaxOptions o, const std::vector<T>& up,
              LD bound_loss, LD bound_grad, bool scaled) {
  std::int64_t counted = 0;
  const Expect e = reference(z, y, lay, o, &counted);
  auto call = [&](T* lo, T* go, const T* u, int which) {
    if (which == 0) return fn::softmax_focal_loss(z.data(), y.data(), lay, o, lo);
    if (which == 1) return fn::softmax_focal_loss_grad(z.data(), y.data(), lay, o, go, u);
    return fn::softmax_focal_loss_with_grad(z.data(), y.data(), lay, o, lo, go);
  };
  auto pos_of = [&](std::size_t j) {
    const auto jj = static_cast<std::int64_t>(j);
    return static_cast<std::size_t>(jj / (lay.classes * lay.inner) * lay.inner + jj % lay.inner);
  };
  auto describe_slot = [&](std::size_t p) {
    const auto pp = static_cast<std::int64_t>(p);
    const std::int64_t oi = pp / lay.inner, i = pp % lay.inner;
    std::string s = fntest::format("layout(%lld,%lld,%lld) (o,i)=(%lld,%lld) gamma=%g alpha%s scale=%g eps=%g",
                                   static_cast<long long>(lay.outer), static_cast<long long>(lay.classes),
                                   static_cast<long long>(lay.inner), static_cast<long long>(oi),
                                   static_cast<long long>(i), o.gamma, o.alpha ? "[k]" : "=1",
                                   o.alpha_scale, o.label_smoothing);
    if constexpr (!std::is_floating_point_v<Y>)
      s += fntest::format(" label=%lld", static_cast<long long>(y[p]));
    s += " z=[";
    for (std::int64_t k = 0; k < lay.classes && k < 8; ++k)
      s += fntest::format("%s%.17g", k ? ", " : "", static_cast<double>(z[at(lay, oi, k, i)]));
    if (lay.classes > 8) s += ", ...";
    s += "]";
    if constexpr (std::is_floating_point_v<Y>) {
      s += " y=[";
      for (std::int64_t k = 0; k < lay.classes && k < 8; ++k)
        s += fntest::format("%s%.9g", k ? ", " : "", static_cast<double>(y[at(lay, oi, k, i)]));
      s += "]";
    }
    return s;
  };
  auto describe = [&](std::size_t j) {
    const auto jj = static_cast<std::int64_t>(j);
    return fntest::format("k=%lld ", static_cast<long long>(jj / lay.inner % lay.classes)) +
           describe_slot(pos_of(j));
  };
  fntest::compare<T>(tag, z.size(), e, counted, o, &up, bound_loss, bound_grad, scaled, call,
                     pos_of, describe, describe_slot);
}

// ---------------------------------------------------------------------------
// Class indices.

template <class T, class L>
void index_case(const char* lname, std::uint64_t seed, fn::ClassLayout lay, std::int64_t ignore,
                double smoothing = 0.0) {
  fntest::Rng rng(seed);
  const std::vector<T> z = softmax_logits<T>(rng, lay);
  const auto npos = static_cast<std::size_t>(lay.positions());
  std::vector<L> lab(npos);
  for (std::size_t p = 0; p < npos; ++p) {
    const std::int64_t oi = static_cast<std::int64_t>(p) / lay.inner, i = static_cast<std::int64_t>(p) % lay.inner;
    const double u = rng.uniform();
    std::int64_t c = rng.below(lay.classes);
    if (u < 0.4) {  // the arg-max class (the confident, accurate-q case)
      for (std::int64_t k = 0; k < lay.classes; ++k)
        if (z[at(lay, oi, k, i)] > z[at(lay, oi, c, i)]) c = k;
    }
    lab[p] = static_cast<L>(u > 0.9 ? ignore : c);
  }
  std::vector<T> up(npos);
  for (auto& u : up) u = static_cast<T>(rng.uniform() < 0.1 ? 0.0 : rng.uniform(-3.0, 3.0));
  std::vector<double> alpha(static_cast<std::size_t>(lay.classes));
  for (auto& a : alpha) a = rng.uniform(0.1, 2.0);
  const std::string tag = std::string(smoothing > 0 ? "softmax smoothing " : "softmax index ") +
                          fntest::type_name<T>() + "/" + lname;
  for (const OptCase& c : option_cases()) {
    for (fn::Reduction red : {fn::Reduction::none, fn::Reduction::mean, fn::Reduction::sum}) {
      fn::SoftmaxOptions o;
      o.gamma = c.gamma;
      o.alpha = c.per_class_alpha ? alpha.data() : nullptr;
      o.alpha_scale = c.alpha_scale;
      o.reduction = red;
      o.normalizer = red == fn::Reduction::sum ? 3.0 : 1.0;
      o.ignore_index = ignore;
      o.label_smoothing = smoothing;
      const bool dense = smoothing > 0;
      run_case<T, L>(tag, lay, z, lab, o, up, dense ? kDense : kIndex, dense ? kDense : kIndex, dense);
    }
  }
}

FN_TEST(softmax_index_rows_double_int64) { index_case<double, std::int64_t>("int64", 101, {120, 5, 1}, -100); }
FN_TEST(softmax_index_rows_float_int64) { index_case<float, std::int64_t>("int64", 102, {120, 5, 1}, -100); }
FN_TEST(softmax_index_rows_double_wide) { index_case<double, std::int64_t>("int64", 103, {12, 37, 1}, -100); }
FN_TEST(softmax_index_two_classes_double) { index_case<double, std::int64_t>("int64", 104, {150, 2, 1}, -1); }
FN_TEST(softmax_index_one_class_double) { index_case<double, std::int64_t>("int64", 105, {20, 1, 3}, -100); }
FN_TEST(softmax_index_nchw_double_int64) { index_case<double, std::int64_t>("int64", 106, {2, 4, 67}, -1); }
FN_TEST(softmax_index_nchw_float_uint8) { index_case<float, std::uint8_t>("uint8", 107, {2, 3, 140}, 255); }
FN_TEST(softmax_smoothing_rows_double) { index_case<double, std::int64_t>("int64", 108, {80, 6, 1}, -100, 0.1); }
FN_TEST(softmax_smoothing_nchw_float) { index_case<float, std::int64_t>("int64", 109, {2, 5, 40}, -100, 0.3); }

// ---------------------------------------------------------------------------
// Dense targets.

template <class T>
void dense_case(std::uint64_t seed, fn::ClassLayout lay) {
  fntest::Rng rng(seed);
  const std::vector<T> z = softmax_logits<T>(rng, lay);
  std::vector<T> y(z.size(), T(0));
  const auto C = lay.classes;
  for (std::int64_t oi = 0; oi < lay.outer; ++oi)
    for (std::int64_t i = 0; i < lay.inner; ++i) {
      const double u = rng.uniform();
      const std::int64_t c = rng.below(C);
      for (std::int64_t k = 0; k < C; ++k) {
        double v;
        if (u < 0.3) v = k == c ? 1.0 : 0.0;                       // one-hot
        else if (u < 0.5) v = k == c ? 0.9 + 0.1 / C : 0.1 / C;     // smoothed
        else if (u < 0.8) v = rng.uniform();                        // soft, unnormalized
        else v = rng.uniform() < 0.5 ? 0.0 : rng.uniform();         // sparse soft
        y[at(lay, oi, k, i)] = static_cast<T>(v);
      }
    }
  std::vector<T> up(static_cast<std::size_t>(lay.positions()));
  for (auto& u : up) u = static_cast<T>(rng.uniform(-3.0, 3.0));
  std::vector<double> alpha(static_cast<std::size_t>(C));
  for (auto& a : alpha) a = rng.uniform(0.1, 2.0);
  const std::string tag = std::string("softmax dense ") + fntest::type_name<T>();
  for (const OptCase& c : option_cases()) {
    for (fn::Reduction red : {fn::Reduction::none, fn::Reduction::mean, fn::Reduction::sum}) {
      fn::SoftmaxOptions o;
      o.gamma = c.gamma;
      o.alpha = c.per_class_alpha ? alpha.data() : nullptr;
      o.alpha_scale = c.alpha_scale;
      o.reduction = red;
      o.normalizer = red == fn::Reduction::none ? 2.5 : 1.0;
      run_case<T, T>(tag, lay, z, y, o, up, kDense, kDense, true);
    }
  }
}

FN_TEST(softmax_dense_rows_double) { dense_case<double>(201, {100, 6, 1}); }
FN_TEST(softmax_dense_rows_float) { dense_case<float>(202, {100, 6, 1}); }
FN_TEST(softmax_dense_nchw_double) { dense_case<double>(203, {2, 3, 70}); }

// One-hot dense targets give the class-index result.
FN_TEST(softmax_dense_one_hot_matches_index) {
  fntest::Rng rng(301);
  const fn::ClassLayout lay{200, 5, 1};
  const std::vector<double> z = softmax_logits<double>(rng, lay);
  std::vector<std::int64_t> lab(200);
  std::vector<double> y(z.size(), 0.0);
  for (std::int64_t p = 0; p < 200; ++p) {
    lab[static_cast<std::size_t>(p)] = rng.below(5);
    y[at(lay, p, lab[static_cast<std::size_t>(p)], 0)] = 1.0;
  }
  for (double g : fntest::gammas()) {
    fn::SoftmaxOptions o;
    o.gamma = g;
    std::vector<double> li(200), ld(200), gi(z.size()), gd(z.size());
    CHECK(fn::softmax_focal_loss_with_grad(z.data(), lab.data(), lay, o, li.data(), gi.data()));
    CHECK(fn::softmax_focal_loss_with_grad(z.data(), y.data(), lay, o, ld.data(), gd.data()));
    for (std::size_t p = 0; p < 200; ++p)
      CHECK_ULPS("softmax one-hot dense vs index loss", 8, ld[p], static_cast<LD>(li[p]), 0, "p=%zu gamma=%g", p, g);
    for (std::size_t j = 0; j < z.size(); ++j)
      CHECK_ULPS("softmax one-hot dense vs index grad", 8, gd[j], static_cast<LD>(gi[j]), 0, "j=%zu gamma=%g", j, g);
  }
}

// Infinite logits: a +inf winner is certain (loss 0), a -inf true class is
// hopeless (loss inf); an all -inf row is uniform; NaN propagates.
FN_TEST(softmax_nonfinite_logits) {
  const double inf = std::numeric_limits<double>::infinity();
  const std::vector<double> z = {inf, 0.0, 1.0,  -inf, 0.0, 1.0,  -inf, -inf, -inf,  NAN, 0.0, 1.0};
  const std::vector<std::int64_t> lab = {0, 0, 1, 1};
  fn::SoftmaxOptions o;
  std::vector<double> l(4), g(12);
  CHECK(fn::softmax_focal_loss_with_grad(z.data(), lab.data(), {4, 3, 1}, o, l.data(), g.data()));
  CHECK_MSG(l[0] == 0 && g[0] == 0 && g[1] == 0 && g[2] == 0, "l=%g g=%g %g %g", l[0], g[0], g[1], g[2]);
  CHECK_MSG(l[1] == inf, "l=%g", l[1]);
  const double third = 1.0 / 3.0;
  CHECK_ULPS("softmax all -inf row", 8, l[2], -(2.0L / 3) * (2.0L / 3) * std::log(static_cast<LD>(third)), 0, "row 2");
  CHECK(std::isnan(l[3]));
}

// Rows won by 700 or more (float64): 1 - p_c = S_o / S with S_o near e^-690,
// part of it exponentials below DBL_MIN (e^-709, e^-720, ...). The loss of
// gamma = 0 is log1p(S_o): every term counts, within 8 ulp of the long double
// value, in the row, short-row and NCHW layouts, and the gradient written over
// the logits is the same.
FN_TEST(softmax_rows_won_by_700) {
  for (const std::int64_t C : {4, 10, 40}) {
    for (const bool nchw : {false, true}) {
      const std::int64_t n = 150;
      const fn::ClassLayout lay = nchw ? fn::ClassLayout{1, C, n} : fn::ClassLayout{n, C, 1};
      std::vector<double> z(static_cast<std::size_t>(n * C));
      std::vector<std::int64_t> lab(static_cast<std::size_t>(n));
      fntest::Rng rng(static_cast<std::uint64_t>(400 + C + (nchw ? 1 : 0)));
      for (std::int64_t p = 0; p < n; ++p) {
        const std::int64_t c = rng.below(C);
        lab[static_cast<std::size_t>(p)] = c;
        for (std::int64_t k = 0; k < C; ++k) {
          const double d = k == c ? 0.0
                           : k == (c + 1) % C ? 690.0
                           : k == (c + 2) % C ? 709.0
                                              : rng.uniform(700.0, 760.0);
          z[nchw ? at(lay, 0, k, p) : at(lay, p, k, 0)] = 5.0 - d;
        }
      }
      for (const double g : {0.0, 0.01}) {
        fn::SoftmaxOptions o;
        o.gamma = g;
        o.reduction = fn::Reduction::none;
        std::vector<double> l(static_cast<std::size_t>(n)), gr(z.size()), gi(z);
        CHECK(fn::softmax_focal_loss_with_grad(z.data(), lab.data(), lay, o, l.data(), gr.data()));
        CHECK(fn::softmax_focal_loss_grad(gi.data(), lab.data(), lay, o, gi.data()));
        for (std::int64_t p = 0; p < n; ++p) {
          const std::int64_t c = lab[static_cast<std::size_t>(p)];
          std::vector<LD> row(static_cast<std::size_t>(C));
          for (std::int64_t k = 0; k < C; ++k)
            row[static_cast<std::size_t>(k)] = z[nchw ? at(lay, 0, k, p) : at(lay, p, k, 0)];
          const std::vector<LD> alpha(static_cast<std::size_t>(C), 1.0L);
          const fnref::SoftmaxResult r =
              fnref::softmax_index(row, static_cast<std::size_t>(c), alpha, g);
          CHECK_MSG(r.loss > 1e-305L, "C=%lld p=%lld", static_cast<long long>(C),
                    static_cast<long long>(p));
          CHECK_ULPS("softmax row won by 700 loss", kIndex, l[static_cast<std::size_t>(p)],
                     r.loss, 0, "C=%lld nchw=%d p=%lld gamma=%g", static_cast<long long>(C),
                     nchw ? 1 : 0, static_cast<long long>(p), g);
          const std::size_t jc = nchw ? at(lay, 0, c, p) : at(lay, p, c, 0);
          CHECK_ULPS("softmax row won by 700 grad (own class)", kIndex, gr[jc],
                     r.grad[static_cast<std::size_t>(c)], 0, "C=%lld nchw=%d p=%lld gamma=%g",
                     static_cast<long long>(C), nchw ? 1 : 0, static_cast<long long>(p), g);
        }
        bool same = true;
        for (std::size_t j = 0; j < z.size(); ++j) same = same && gi[j] == gr[j];
        CHECK_MSG(same, "in-place gradient differs, C=%lld nchw=%d", static_cast<long long>(C),
                  nchw ? 1 : 0);
      }
    }
  }
}

// grad_output / normalizer beyond DBL_MAX: 17 / DBL_MIN = 7.6e308, times
// p_1 = 1 / (2 + e^9) = 1.2e-4: a finite gradient of 9.4e304 (gamma 0,
// one-hot / index target 0, logits {0, 0, 9}); overflowing values are inf
// with their sign.
FN_TEST(softmax_gradient_scale_beyond_double_range) {
  const std::vector<double> z = {0.0, 0.0, 9.0, 0.0, 0.0, 9.0};
  const std::vector<double> y = {1.0, 0.0, 0.0, 1.0, 0.0, 0.0};
  const std::vector<std::int64_t> lab = {0, 0};
  const std::vector<double> up = {17.0, -1.0};
  const fn::ClassLayout lay{2, 3, 1};
  fn::SoftmaxOptions o;
  o.gamma = 0.0;
  o.normalizer = std::numeric_limits<double>::min();
  const LD e9 = std::exp(9.0L), S = 2 + e9;
  const LD scale0 = 17.0L / static_cast<LD>(o.normalizer);
  const LD scale1 = -1.0L / static_cast<LD>(o.normalizer);
  // dCE/dz = p - y
  const LD want[6] = {(1 / S - 1) * scale0, scale0 / S, e9 / S * scale0,
                      (1 / S - 1) * scale1, scale1 / S, e9 / S * scale1};
  o.reduction = fn::Reduction::none;
  std::vector<double> gi(6), gd(6);
  CHECK(fn::softmax_focal_loss_grad(z.data(), lab.data(), lay, o, gi.data(), up.data()));
  CHECK(fn::softmax_focal_loss_grad(z.data(), y.data(), lay, o, gd.data(), up.data()));
  for (std::size_t j = 0; j < 6; ++j) {
    if (std::fabs(want[j]) > static_cast<LD>(std::numeric_limits<double>::max())) {
      CHECK_MSG(std::isinf(gi[j]) && std::isinf(gd[j]) && (gi[j] > 0) == (want[j] > 0),
                "j=%zu: %g %g", j, gi[j], gd[j]);
    } else {
      CHECK_ULPS("softmax grad, scale beyond DBL_MAX (index)", kIndex, gi[j], want[j], 0, "j=%zu", j);
      CHECK_ULPS("softmax grad, scale beyond DBL_MAX (dense)", kIndex, gd[j], want[j], 0, "j=%zu", j);
    }
  }
  CHECK_MSG(std::isfinite(gi[1]) && gi[1] > 9e304, "g=%g", gi[1]);
}

}  // namespace
