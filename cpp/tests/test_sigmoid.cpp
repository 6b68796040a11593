// Binary (sigmoid) kernels against the long double reference: elementwise hard
// labels (several integer types and bool), soft targets, class-index labels
// (inner == 1 and > 1, background, ignore_index); loss, gradient and fused;
// float and double; reductions, normalizer and upstream gradient.
#include <focal_native/focal_native.hpp>

#include <cstdint>
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

// Bounds in ulps of the output type. Hard labels: the brief of issue 5 asks
// for <= 8 with gamma in [0, 5] and logits over +-1e4. Soft targets compound
// the error of u = p(1 - y) + q y through u^gamma (gamma times its ulps) and
// their gradient is a difference, measured against the size of its terms.
constexpr LD kHard = 8;
constexpr LD kSoft = 24;

// Reference for elementwise targets.
template <class T, class YV>
Expect reference_elementwise(const std::vector<T>& z, const YV& y, const fn::SigmoidOptions& o) {
  using Y = std::decay_t<decltype(y[0])>;
  Expect e;
  const std::size_t n = z.size();
  e.loss.resize(n);
  e.grad.resize(n);
  e.gscale.resize(n);
  for (std::size_t i = 0; i < n; ++i) {
    fnref::Sigmoid r;
    if constexpr (std::is_floating_point_v<Y>)
      r = fnref::sigmoid_soft(z[i], static_cast<LD>(y[i]), o.alpha, o.gamma);
    else
      r = fnref::sigmoid_hard(z[i], y[i] == 1, o.alpha, o.gamma);
    e.loss[i] = r.loss;
    e.grad[i] = r.grad;
    e.gscale[i] = r.gscale;
  }
  return e;
}

// Reference for class-index labels in `lay`; ignored positions give 0.
template <class T, class L>
Expect reference_labels(const std::vector<T>& z, const std::vector<L>& lab, fn::ClassLayout lay,
                        const fn::SigmoidOptions& o, std::int64_t* counted) {
  Expect e;
  const std::size_t n = z.size();
  e.loss.assign(n, 0);
  e.grad.assign(n, 0);
  e.gscale.assign(n, 0);
  *counted = 0;
  for (std::int64_t oi = 0; oi < lay.outer; ++oi)
    for (std::int64_t i = 0; i < lay.inner; ++i) {
      const auto lv = static_cast<std::int64_t>(lab[static_cast<std::size_t>(oi * lay.inner + i)]);
      if (lv == o.ignore_index) continue;
      *counted += lay.classes;
      for (std::int64_t k = 0; k < lay.classes; ++k) {
        const auto j = static_cast<std::size_t>((oi * lay.classes + k) * lay.inner + i);
        const fnref::Sigmoid r = fnref::sigmoid_hard(z[j], lv == k, o.alpha, o.gamma);
        e.loss[j] = r.loss;
        e.grad[j] = r.grad;
      }
    }
  return e;
}

const auto identity = [](std::size_t j) { return j; };

std::vector<fn::SigmoidOptions> option_grid() {
  std::vector<fn::SigmoidOptions> v;
  const double alphas[] = {0.25, -1.0, 0.75, 1.0, 0.0};
  std::size_t ai = 0;
  for (double g : fntest::gammas()) {
    fn::SigmoidOptions o;
    o.gamma = g;
    o.alpha = alphas[ai++ % 5];
    v.push_back(o);
  }
  return v;
}

// ---------------------------------------------------------------------------

template <class T, class Y>
void elementwise_hard(const char* yname, std::uint64_t seed, std::size_t n) {
  fntest::Rng rng(seed);
  const std::vector<T> z = fntest::random_logits<T>(rng, n);
  fntest::Vec<Y> y(n);
  for (std::size_t i = 0; i < n; ++i) y[i] = static_cast<Y>((i / 2 + i) % 3 == 0 || rng.uniform() < 0.3);
  std::vector<T> up(n);
  for (auto& u : up) u = static_cast<T>(rng.uniform() < 0.1 ? 0.0 : rng.uniform(-3.0, 3.0));
  for (fn::SigmoidOptions o : option_grid()) {
    for (fn::Reduction red : {fn::Reduction::none, fn::Reduction::mean, fn::Reduction::sum}) {
      for (double norm : {1.0, 7.0}) {
        o.reduction = red;
        o.normalizer = norm;
        const Expect e = reference_elementwise(z, y, o);
        const std::string tag = std::string("sigmoid hard ") + fntest::type_name<T>() + "/" + yname;
        auto call = [&](T* lo, T* go, const T* u, int which) {
          if (which == 0) return fn::sigmoid_focal_loss(z.data(), y.data(), static_cast<std::int64_t>(n), o, lo);
          if (which == 1) return fn::sigmoid_focal_loss_grad(z.data(), y.data(), static_cast<std::int64_t>(n), o, go, u);
          return fn::sigmoid_focal_loss_with_grad(z.data(), y.data(), static_cast<std::int64_t>(n), o, lo, go);
        };
        auto describe = [&](std::size_t i) {
          return fntest::format("i=%zu z=%.17g y=%d gamma=%g alpha=%g norm=%g", i,
                                static_cast<double>(z[i]), static_cast<int>(y[i]), o.gamma,
                                o.alpha, o.normalizer);
        };
        fntest::compare<T>(tag, n, e, static_cast<std::int64_t>(n), o, &up, kHard, kHard, false,
                           call, identity, describe, describe);
      }
    }
  }
}

FN_TEST(sigmoid_elementwise_hard_double_uint8) { elementwise_hard<double, std::uint8_t>("uint8", 1, 700); }
FN_TEST(sigmoid_elementwise_hard_float_uint8) { elementwise_hard<float, std::uint8_t>("uint8", 2, 700); }
FN_TEST(sigmoid_elementwise_hard_double_int32) { elementwise_hard<double, std::int32_t>("int32", 3, 300); }
FN_TEST(sigmoid_elementwise_hard_float_bool) { elementwise_hard<float, bool>("bool", 4, 300); }
FN_TEST(sigmoid_elementwise_hard_double_bool) { elementwise_hard<double, bool>("bool", 5, 300); }

template <class T>
void elementwise_soft(std::uint64_t seed, std::size_t n) {
  fntest::Rng rng(seed);
  const std::vector<T> z = fntest::random_logits<T>(rng, n);
  std::vector<T> y(n);
  for (auto& v : y) v = fntest::random_soft_target<T>(rng);
  std::vector<T> up(n);
  for (auto& u : up) u = static_cast<T>(rng.uniform(-3.0, 3.0));
  for (fn::SigmoidOptions o : option_grid()) {
    for (fn::Reduction red : {fn::Reduction::none, fn::Reduction::sum}) {
      o.reduction = red;
      o.normalizer = 3.0;
      const Expect e = reference_elementwise(z, y, o);
      const std::string tag = std::string("sigmoid soft ") + fntest::type_name<T>();
      auto call = [&](T* lo, T* go, const T* u, int which) {
        const auto nn = static_cast<std::int64_t>(n);
        if (which == 0) return fn::sigmoid_focal_loss(z.data(), y.data(), nn, o, lo);
        if (which == 1) return fn::sigmoid_focal_loss_grad(z.data(), y.data(), nn, o, go, u);
        return fn::sigmoid_focal_loss_with_grad(z.data(), y.data(), nn, o, lo, go);
      };
      auto describe = [&](std::size_t i) {
        return fntest::format("i=%zu z=%.17g y=%.17g gamma=%g alpha=%g", i,
                              static_cast<double>(z[i]), static_cast<double>(y[i]), o.gamma,
                              o.alpha);
      };
      fntest::compare<T>(tag, n, e, static_cast<std::int64_t>(n), o, &up, kSoft, kSoft, true,
                         call, identity, describe, describe);
    }
  }
}

FN_TEST(sigmoid_elementwise_soft_double) { elementwise_soft<double>(11, 800); }
FN_TEST(sigmoid_elementwise_soft_float) { elementwise_soft<float>(12, 800); }

// Soft targets exactly 0 and 1 give the hard-label result bit for bit (when
// the compiler does not contract FMAs on its own, see kMayContract).
template <class T>
void soft_equals_hard_at_0_and_1() {
  fntest::Rng rng(21);
  const std::size_t n = 500;
  const std::vector<T> z = fntest::random_logits<T>(rng, n);
  std::vector<T> ys(n);
  std::vector<std::uint8_t> yh(n);
  for (std::size_t i = 0; i < n; ++i) {
    yh[i] = static_cast<std::uint8_t>(rng.uniform() < 0.5);
    ys[i] = static_cast<T>(yh[i]);
  }
  for (double g : fntest::gammas()) {
    fn::SigmoidOptions o;
    o.gamma = g;
    std::vector<T> ls(n), lh(n), gs(n), gh(n);
    CHECK(fn::sigmoid_focal_loss_with_grad(z.data(), ys.data(), static_cast<std::int64_t>(n), o, ls.data(), gs.data()));
    CHECK(fn::sigmoid_focal_loss_with_grad(z.data(), yh.data(), static_cast<std::int64_t>(n), o, lh.data(), gh.data()));
    for (std::size_t i = 0; i < n; ++i) {
      if (!fntest::kMayContract) {
        CHECK_MSG(ls[i] == lh[i] && gs[i] == gh[i], "i=%zu z=%g y=%d gamma=%g", i,
                  static_cast<double>(z[i]), yh[i], g);
      } else {
        CHECK_ULPS("sigmoid soft 0/1 vs hard loss (FMA contraction)", 4, ls[i],
                   static_cast<LD>(lh[i]), 0, "i=%zu gamma=%g", i, g);
        CHECK_ULPS("sigmoid soft 0/1 vs hard grad (FMA contraction)", 4, gs[i],
                   static_cast<LD>(gh[i]), 0, "i=%zu gamma=%g", i, g);
      }
    }
  }
}

FN_TEST(sigmoid_soft_targets_0_1_equal_hard_labels) {
  soft_equals_hard_at_0_and_1<float>();
  soft_equals_hard_at_0_and_1<double>();
}

// ---------------------------------------------------------------------------
// Class-index labels.

template <class T, class L>
void labels_case(const char* lname, std::uint64_t seed, fn::ClassLayout lay, std::int64_t ignore) {
  fntest::Rng rng(seed);
  const auto n = static_cast<std::size_t>(lay.elements());
  const auto npos = static_cast<std::size_t>(lay.positions());
  const std::vector<T> z = fntest::random_logits<T>(rng, n);
  std::vector<L> lab(npos);
  for (std::size_t i = 0; i < npos; ++i) {
    const double u = rng.uniform();
    // Classes, background (== classes) and ignored positions.
    lab[i] = static_cast<L>(u < 0.15 ? ignore : u < 0.3 ? lay.classes : rng.below(lay.classes));
  }
  std::vector<T> up(n);
  for (auto& u : up) u = static_cast<T>(rng.uniform(-2.0, 2.0));
  for (fn::SigmoidOptions o : option_grid()) {
    for (fn::Reduction red : {fn::Reduction::none, fn::Reduction::mean, fn::Reduction::sum}) {
      o.reduction = red;
      o.ignore_index = ignore;
      o.normalizer = red == fn::Reduction::sum ? 0.5 : 1.0;
      std::int64_t counted = 0;
      const Expect e = reference_labels(z, lab, lay, o, &counted);
      const std::string tag = std::string("sigmoid labels ") + fntest::type_name<T>() + "/" + lname;
      auto call = [&](T* lo, T* go, const T* u, int which) {
        if (which == 0) return fn::sigmoid_focal_loss(z.data(), lab.data(), lay, o, lo);
        if (which == 1) return fn::sigmoid_focal_loss_grad(z.data(), lab.data(), lay, o, go, u);
        return fn::sigmoid_focal_loss_with_grad(z.data(), lab.data(), lay, o, lo, go);
      };
      auto describe = [&](std::size_t j) {
        const auto jj = static_cast<std::int64_t>(j);
        const std::int64_t i = jj % lay.inner, k = jj / lay.inner % lay.classes,
                           oi = jj / (lay.inner * lay.classes);
        return fntest::format("layout(%lld,%lld,%lld) (o,k,i)=(%lld,%lld,%lld) z=%.17g label=%lld gamma=%g alpha=%g",
                              static_cast<long long>(lay.outer), static_cast<long long>(lay.classes),
                              static_cast<long long>(lay.inner), static_cast<long long>(oi),
                              static_cast<long long>(k), static_cast<long long>(i),
                              static_cast<double>(z[j]),
                              static_cast<long long>(lab[static_cast<std::size_t>(oi * lay.inner + i)]),
                              o.gamma, o.alpha);
      };
      fntest::compare<T>(tag, n, e, counted, o, &up, kHard, kHard, false, call, identity,
                         describe, describe);
    }
  }
}

FN_TEST(sigmoid_labels_rows_double_int64) { labels_case<double, std::int64_t>("int64", 31, {60, 7, 1}, -100); }
FN_TEST(sigmoid_labels_rows_float_int64) { labels_case<float, std::int64_t>("int64", 32, {60, 7, 1}, -100); }
FN_TEST(sigmoid_labels_nchw_double_int32) { labels_case<double, std::int32_t>("int32", 33, {3, 4, 45}, -1); }
FN_TEST(sigmoid_labels_nchw_float_uint8) { labels_case<float, std::uint8_t>("uint8", 34, {2, 3, 130}, 255); }
FN_TEST(sigmoid_labels_one_class_double) { labels_case<double, std::int64_t>("int64", 35, {40, 1, 3}, -100); }

// Every position ignored: the mean of nothing is NaN, the sum 0, the gradient 0.
FN_TEST(sigmoid_labels_all_ignored) {
  const std::vector<double> z(12, 0.5);
  const std::vector<std::int64_t> lab(4, -100);
  fn::SigmoidOptions o;
  o.reduction = fn::Reduction::mean;
  std::vector<double> g(12, 1.0);
  const fn::Status s = fn::sigmoid_focal_loss_with_grad(z.data(), lab.data(), {4, 3, 1}, o,
                                                        fntest::no_output<double>, g.data());
  CHECK(s.code == fn::Status::ok && s.count == 0 && std::isnan(s.loss));
  for (double v : g) CHECK(v == 0.0);
  o.reduction = fn::Reduction::sum;
  const fn::Status s2 =
      fn::sigmoid_focal_loss(z.data(), lab.data(), {4, 3, 1}, o, fntest::no_output<double>);
  CHECK(s2.code == fn::Status::ok && s2.count == 0 && s2.loss == 0.0);
}

// Non-finite logits: +-inf give the limits, NaN propagates.
template <class T>
void nonfinite() {
  const T inf = std::numeric_limits<T>::infinity();
  const std::vector<T> z = {inf, -inf, inf, -inf, std::numeric_limits<T>::quiet_NaN()};
  const std::vector<std::uint8_t> y = {1, 1, 0, 0, 1};
  fn::SigmoidOptions o;
  o.alpha = 0.25;
  o.gamma = 2.0;
  std::vector<T> l(5), g(5);
  CHECK(fn::sigmoid_focal_loss_with_grad(z.data(), y.data(), 5, o, l.data(), g.data()));
  CHECK(l[0] == 0 && g[0] == 0);                       // certain and right
  CHECK(l[1] == inf && g[1] == static_cast<T>(-0.25));  // certain and wrong: slope -alpha
  CHECK(l[2] == inf && g[2] == static_cast<T>(0.75));
  CHECK(l[3] == 0 && g[3] == 0);
  CHECK(std::isnan(l[4]) && std::isnan(g[4]));
}

FN_TEST(sigmoid_nonfinite_logits) {
  nonfinite<float>();
  nonfinite<double>();
}

}  // namespace
