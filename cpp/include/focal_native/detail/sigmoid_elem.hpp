// Per-element formulas of the binary (sigmoid) focal loss: the one place the
// loss and its derivative are written, shared by every binary kernel.
// Notation and derivations: ../shared/NUMERICS.md ("Binary").
#pragma once

#include <cmath>
#include <limits>

#include "config.hpp"
#include "math.hpp"

FOCAL_NATIVE_BEGIN_NAMESPACE
namespace detail {

// How q^gamma is evaluated: gamma == 0 (the factor is exactly 1), gamma == 2
// (q*q), or exp(gamma * log q) in general.
enum class GammaKind { zero, square, general };

// A loss and its derivative, returned by value: keeps the loop bodies free of
// address-taken locals, which would stop `omp simd` from vectorizing them.
struct LossGrad {
  double loss;
  double dz;
};

struct SigmoidConsts {
  double alpha_pos;  // alpha_t of a positive (1 when unweighted)
  double alpha_neg;  // alpha_t of a negative
  double gamma;
};

// w^gamma from log w = lw_hi + lw_lo (<= 0, possibly -inf). For float64 data
// the product gamma*log w is formed exactly (hi + lo) before exp, so the
// result keeps full relative accuracy however large |log w| is.
template <Prec P, GammaKind G>
FOCAL_NATIVE_INLINE double pow_from_log(double w, double lw_hi, double lw_lo,
                                        double gamma) noexcept {
  if constexpr (G == GammaKind::zero) {
    (void)w, (void)lw_hi, (void)lw_lo, (void)gamma;
    return 1.0;
  } else if constexpr (G == GammaKind::square) {
    (void)lw_hi, (void)lw_lo, (void)gamma;
    return w * w;
  } else {
    (void)w;
    if constexpr (P == Prec::full) {
      double ph, pe;
      two_prod(gamma, lw_hi, ph, pe);
      // Far below exp's range (this includes log w = -inf, and the overflow
      // of the error term for huge |log w|) the result is 0 whatever pe is.
      const bool tiny = ph < -746.0;
      const double corr = tiny ? 0.0 : mul_add(gamma, lw_lo, pe);
      ph = tiny ? -std::numeric_limits<double>::infinity() : ph;
      return exp_nonpos<P>(ph) * (1.0 + corr);
    } else {
      // lw_lo is meaningless (possibly NaN) when lw_hi = -inf; NaN propagates.
      const bool neg_inf = lw_hi == -std::numeric_limits<double>::infinity();
      const double lw = select_bits(neg_inf, lw_hi, lw_hi + lw_lo);
      return exp_nonpos<P, Flush::bitwise>(gamma * lw);
    }
  }
}

// The first steps of every element, which the kernels may run as loops of
// their own over a chunk: e = exp(-|z|), then 1/(1 + e) and log1p(e).
//
// One element's dependency chain (exp, then log1p and the reciprocal, then
// the products; for general gamma a second exp after log q) is some hundred
// cycles or more, too long for the out-of-order window to overlap enough
// iterations of a single loop. Split into loops, each chain is shorter.
// Measured, one core, 10M elements, ns/element, forward / fused, same bits:
//   e first (every gamma): binary float32 gamma 2 0.70 / 0.83 -> 0.52 /
//   0.63; float64 1.62 / 2.02 -> 1.22 / 1.45;
//   unit_terms second (general gamma only; at gamma 2 the extra loop's
//   stores cost more than it saves, float64 forward 1.29 -> 1.56): float64
//   gamma 1.5 3.26 / 3.44 -> 2.19 / 2.27 (both steps).
template <Prec P>
FOCAL_NATIVE_INLINE double exp_neg_abs(double z) noexcept {
  return exp_nonpos<P, Flush::bitwise>(-std::fabs(z));
}

// 1/(1 + e) and log1p(e) = lhi + llo, for e = exp_neg_abs(z) in [0, 1].
struct UnitTerms {
  double inv, lhi, llo;
};

template <Prec P>
FOCAL_NATIVE_INLINE UnitTerms unit_terms(double e) noexcept {
  const double u = 1.0 + e;
  UnitTerms t;
  t.inv = recip_1to2<P>(u);
  log1p_unit<P>(e, u, t.inv, t.lhi, t.llo);
  return t;
}

// Hard label (pos: y == 1), e = exp_neg_abs(z), t = unit_terms(e). Returns
// the loss; writes dFL/dz when WantGrad.
//   e = exp(-|z|), l = log1p(e), -log p = max(-z_t, 0) + l,
//   log q = -(max(z_t, 0) + l), FL = alpha_t q^g (-log p),
//   dFL/dz = -s alpha_t q^g (g p (-log p) + q).
template <Prec P, GammaKind G, bool WantGrad>
FOCAL_NATIVE_INLINE LossGrad sigmoid_hard_t(double z, double e, UnitTerms t, bool pos,
                                            const SigmoidConsts& c) noexcept {
  // Selects are bitwise (select_bits): with plain conditionals GCC evaluates
  // both arms of a product under masks and merges them, at twice the cost.
  const double zt = select_bits(pos, z, -z);
  const double inv = t.inv, lhi = t.lhi, llo = t.llo;
  const bool zt_nonneg = zt >= 0.0;
  const double big = inv, small = e * inv;  // sigma(|z|), sigma(-|z|)
  const double p = select_bits(zt_nonneg, big, small);
  const double q = select_bits(zt_nonneg, small, big);
  const double mp = select_bits(zt_nonneg, 0.0, -zt);  // max(-z_t, 0)
  const double ce = mp + lhi;  // -log p >= 0 (lhi + llo would round to lhi)
  double qg;
  if constexpr (G == GammaKind::general) {
    const double mq = select_bits(zt_nonneg, zt, 0.0);  // max(z_t, 0)
    double sh, se;
    two_sum(mq, lhi, sh, se);
    qg = pow_from_log<P, G>(q, -sh, -(se + llo), c.gamma);
  } else {
    qg = pow_from_log<P, G>(q, 0.0, 0.0, c.gamma);
  }
  const double at = select_bits(pos, c.alpha_pos, c.alpha_neg);
  const double w = at * qg;
  double dz = 0.0;
  if constexpr (WantGrad) {
    double inner = q;
    if constexpr (G != GammaKind::zero) {
      const double pce = select_bits(p == 0.0, 0.0, p * ce);  // p log p -> 0 as p -> 0
      inner = mul_add(c.gamma, pce, q);
    }
    const double g = w * inner;
    dz = select_bits(pos, -g, g);
  }
  // The loss as alpha_t (q^g ce): q^g ce is at least the loss (alpha_t <= 1),
  // so flush-to-zero cannot drop a normal loss (a subnormal alpha times a
  // large ce). A zero weight (alpha_t = 0, or q^g = 0) wins over an infinite
  // ce, not over a NaN one (a NaN logit): NaN in, NaN out.
  const bool zero_w = (at == 0.0) | (qg == 0.0);
  return {select_bits(zero_w && ce == ce, 0.0, at * (qg * ce)), dz};
}

// Soft target y in (0, 1) (torchvision / Keras semantics), e = exp_neg_abs(z),
// t = unit_terms(e).
//   ce = max(z, 0) - y z + l, u = p (1 - y) + q y, alpha_t = a y + (1 - a)(1 - y),
//   FL = alpha_t u^g ce, dFL/dz = alpha_t u^g (g p q (1 - 2y) ce / u + (p - y)).
template <Prec P, GammaKind G, bool WantGrad>
FOCAL_NATIVE_INLINE LossGrad sigmoid_soft_t(double z, double e, UnitTerms t, double y,
                                            const SigmoidConsts& c) noexcept {
  const double inv = t.inv, lhi = t.lhi;
  const bool z_nonneg = z >= 0.0;
  const double p = select_bits(z_nonneg, inv, e * inv);
  const double q = select_bits(z_nonneg, e * inv, inv);
  const double omy = 1.0 - y;
  const double ce = select_bits(z > 0.0, z * omy, -z * y) + lhi;  // lhi + llo would round to lhi
  const double w = mul_add(p, omy, q * y);  // 1 - p_t, a sum of non-negative terms
  double wg;
  if constexpr (G == GammaKind::general) {
    double whi, wlo;
    log_hilo<P>(w, whi, wlo);
    wg = pow_from_log<P, G>(w, whi, wlo, c.gamma);
  } else {
    wg = pow_from_log<P, G>(w, 0.0, 0.0, c.gamma);
  }
  // alpha_t, selected (not computed) for y = 0 and y = 1: the only targets
  // for which it can be subnormal (a subnormal alpha with y = 1), and an
  // arithmetic result would be flushed to 0. The loss is then formed as in
  // sigmoid_hard_t.
  const double at = select_bits(omy == 0.0, c.alpha_pos,
                                select_bits(y == 0.0, c.alpha_neg,
                                            mul_add(c.alpha_pos, y, c.alpha_neg * omy)));
  const double f = at * wg;
  double dz = 0.0;
  if constexpr (WantGrad) {
    double bracket = mul_add(p, omy, -(q * y));  // p - y
    if constexpr (G != GammaKind::zero) {
      // p q ce -> 0 when p or q underflows (then ce may be infinite).
      const double pq = p * q;
      const double pqce = select_bits(pq == 0.0, 0.0, pq * ce / w);
      bracket = mul_add(c.gamma * pqce, 1.0 - 2.0 * y, bracket);
    }
    dz = f * bracket;
  }
  // A zero weight (alpha_t = 0, or u^g = 0: underflow at an infinite logit)
  // wins over an infinite ce.
  const bool zero_w = (at == 0.0) | (wg == 0.0);
  return {select_bits(zero_w && ce == ce, 0.0, at * (wg * ce)), dz};
}

}  // namespace detail
FOCAL_NATIVE_END_NAMESPACE
