// Binary focal loss of float32 data in float32 arithmetic: the fast path for
// hard labels with gamma = 0 or gamma = 2 (the RetinaNet default).
//
// The general kernel evaluates float32 data in double (8 lanes per 512-bit
// register); here every step is a float operation (16 lanes), about twice the
// throughput. It is used only where float arithmetic keeps the result within
// a few ulps: hard labels (no soft-target cancellation), q^gamma as q*q or 1
// (no exp(gamma log q) amplifying the rounding of log q), and output scales
// <= 1 (a float intermediate flushed to zero is then below float32's normal
// range in the result too). Everything else takes the double path.
//
// Error budget (float32 ulps, worst case, all roundings aligned):
//   e = exp(-|z|): 0.6; 1/(1+e) with the rounding of 1+e corrected: 0.5;
//   q or p = e/(1+e): 1.6; q^2: 3.7; ce = -log p: 1.5; alpha q^2 ce: ~6.2.
// Measured against 50-digit mpmath (tests/test_sigmoid_accuracy.py): see the
// README's accuracy table.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#include "config.hpp"
#include "sigmoid_elem.hpp"

FOCAL_NATIVE_BEGIN_NAMESPACE
namespace detail {

FOCAL_NATIVE_INLINE std::uint32_t fbits_of(float x) noexcept {
  std::uint32_t u;
  std::memcpy(&u, &x, sizeof u);
  return u;
}

FOCAL_NATIVE_INLINE float float_of(std::uint32_t u) noexcept {
  float x;
  std::memcpy(&x, &u, sizeof x);
  return x;
}

// a*b + c in float, rounded once where the hardware has FMA.
FOCAL_NATIVE_INLINE float mul_add_f(float a, float b, float c) noexcept {
#if FOCAL_NATIVE_HAS_FMA
  return std::fma(a, b, c);
#else
  return a * b + c;
#endif
}

// exp(x + lo) for x <= 0 (also -inf, NaN), in float, where lo is a small
// correction (|lo| <= ulp(x)) added to the reduced argument: the low part of
// an exactly known argument. Results below FLT_MIN (x < ln FLT_MIN =
// -87.3365) are flushed to +0.
//   x = k ln2 + r, |r| <= ln2/2; exp(r) = (1 + r) + r^2 P(r), with 1 + r
//   kept exactly as h + l, so the last addition is the only full rounding.
//   P: degree 4, 2^-26.5 relative (fit for this project, float coefficients).
// (Applying lo as exp(x) (1 + lo) instead would underflow: exp(x) lo is
// below FLT_MIN for x < -70 and flushed.)
// InRange: the caller guarantees x in [-87, 0] (finite, no flush): the clamp
// and the flush, four of the loop's ~55 vector operations, are left out;
// the results are the same bits.
template <bool HasLo = false, bool InRange = false>
FOCAL_NATIVE_INLINE float exp_nonpos_f_impl(float x, float lo) noexcept {
  constexpr float log2e = 0x1.715476p+0f;
  constexpr float ln2_hi = 0x1.62e4p-1f;  // 17 bits: k*ln2_hi exact for |k| <= 127
  constexpr float ln2_lo = 0x1.7f7d1cp-20f;
  constexpr float shifter = 0x1.8p23f;
  const float xc = InRange ? x : (x < -87.5f ? -87.5f : x);  // keeps k >= -126 (normal 2^k)
  const float t = mul_add_f(xc, log2e, shifter);  // rounds x log2(e) to an integer k
  const float kd = t - shifter;
  float r = mul_add_f(-kd, ln2_hi, xc);  // exact: k ln2_hi has 17 significant bits
  r = mul_add_f(-kd, ln2_lo, r);
  if constexpr (HasLo) r = r + lo;  // (x + 0 is not folded away under strict IEEE)
  // Estrin's scheme: a chain of three operations after r instead of four.
  const float r2 = r * r;
  const float p01 = mul_add_f(0x1.5554dcp-3f, r, 0x1.0p-1f);
  const float p23 = mul_add_f(0x1.120b66p-7f, r, 0x1.5554eap-5f);
  const float poly = mul_add_f(mul_add_f(0x1.6d431ap-10f, r2, p23), r2, p01);
  const float h = 1.0f + r;
  const float l = r - (h - 1.0f);
  const float er = h + mul_add_f(r2, poly, l);
  const std::uint32_t biased = fbits_of(t) - fbits_of(shifter) + 127u;
  const float scale = float_of(biased << 23);
  if constexpr (InRange) return er * scale;
  return x < -0x1.5d58a0p+6f ? 0.0f : er * scale;
}

FOCAL_NATIVE_INLINE float exp_nonpos_f(float x) noexcept { return exp_nonpos_f_impl<false>(x, 0.0f); }
// exp(x + lo) for x in [-87, 0] (see InRange).
FOCAL_NATIVE_INLINE float exp_inrange_f(float x, float lo) noexcept {
  return exp_nonpos_f_impl<true, true>(x, lo);
}

// log1p(e) for e in [0, 1], in float: e + e^2 Q(e), Q of degree 9
// (2^-27.5 relative; fit for this project). About 1 ulp.
FOCAL_NATIVE_INLINE float log1p_unit_f(float e) noexcept {
  float q = 0x1.78af8ap-9f;
  q = mul_add_f(q, e, -0x1.1eebacp-6f);
  q = mul_add_f(q, e, 0x1.990946p-5f);
  q = mul_add_f(q, e, -0x1.78f410p-4f);
  q = mul_add_f(q, e, 0x1.0bb368p-3f);
  q = mul_add_f(q, e, -0x1.4f6e8ep-3f);
  q = mul_add_f(q, e, 0x1.98c482p-3f);
  q = mul_add_f(q, e, -0x1.fff066p-3f);
  q = mul_add_f(q, e, 0x1.55551cp-2f);
  q = mul_add_f(q, e, -0x1.0p-1f);
  return mul_add_f(e, e * q, e);
}

struct LossGradF {
  float loss;
  float dz;
};

// The weights of a float-path call: alpha_t of a positive / negative for the
// loss, and for the gradient alpha_t times the call's gradient scale with the
// sign of dz_t/dz folded in (-alpha_pos s, +alpha_neg s), each rounded once.
// The gradient then needs no scaling pass of its own.
struct WeightsF {
  float loss_pos, loss_neg, grad_pos, grad_neg;
};

inline WeightsF weights_f(double alpha_pos, double alpha_neg, double gscale) noexcept {
  return {static_cast<float>(alpha_pos), static_cast<float>(alpha_neg),
          static_cast<float>(-alpha_pos * gscale), static_cast<float>(alpha_neg * gscale)};
}

// e = exp(-|z|), the first step of every element: computed by a loop of its
// own (see exp_neg_abs in sigmoid_elem.hpp).
FOCAL_NATIVE_INLINE float exp_neg_abs_f(float z) noexcept { return exp_nonpos_f(-std::fabs(z)); }

// ef[j] = exp_neg_abs_f(z[j]) for a chunk of m elements: the loop of its own
// that every float-path chunk starts with.
FOCAL_NATIVE_INLINE void exp_neg_abs_f_chunk(const float* z, std::int64_t m, float* ef) noexcept {
  FOCAL_NATIVE_SIMD
  for (std::int64_t j = 0; j < m; ++j) ef[j] = exp_neg_abs_f(z[j]);
}

// Hard label (pos: y == 1), G = zero or square, e = exp_neg_abs_f(z); the
// formulas of sigmoid_hard_t. dz is the scaled derivative (see WeightsF).
template <GammaKind G, bool WantGrad>
FOCAL_NATIVE_INLINE LossGradF sigmoid_hard_f_e(float z, float e, bool pos, WeightsF wt) noexcept {
  static_assert(G != GammaKind::general, "the float path evaluates q^gamma as 1 or q*q only");
  const float zt = pos ? z : -z;
  const float u = 1.0f + e;
  const float inv0 = 1.0f / u;
  // u = fl(1 + e) lost c = (1 + e) - u (exact: Fast2Sum); 1/(u + c) ~ inv0 - c inv0^2.
  const float c = (1.0f - u) + e;
  const float inv = mul_add_f(-(c * inv0), inv0, inv0);
  const float l = log1p_unit_f(e);
  const bool zt_nonneg = zt >= 0.0f;
  const float big = inv, small = e * inv;  // sigma(|z|), sigma(-|z|)
  const float p = zt_nonneg ? big : small;
  const float q = zt_nonneg ? small : big;
  const float mzt = -zt;
  const float mp = mzt > 0.0f ? mzt : 0.0f;  // max(-z_t, 0): one max instruction
  const float ce = mp + l;                    // -log p >= 0
  const float qg = G == GammaKind::zero ? 1.0f : q * q;
  float dz = 0.0f;
  if constexpr (WantGrad) {
    float inner = q;
    if constexpr (G != GammaKind::zero) {
      // p log p -> 0 as p -> 0: ce is infinite only where p is 0 (z_t = -inf),
      // and capped there, p ce = 0 (NaN stays NaN through p).
      constexpr float big_f = 0x1.fffffep127f;
      const float pce = p * (ce < big_f ? ce : big_f);
      inner = mul_add_f(2.0f, pce, q);
    }
    // q^g inner <= 1.75 and the weight is >= FLT_MIN or 0 (use_float_path):
    // nothing above FLT_MIN is flushed on the way.
    dz = (pos ? wt.grad_pos : wt.grad_neg) * (qg * inner);
  }
  // A zero weight wins over an infinite ce (z_t = -inf), not over a NaN one.
  const float at = pos ? wt.loss_pos : wt.loss_neg;
  return {at == 0.0f && ce == ce ? 0.0f : at * (qg * ce), dz};
}

}  // namespace detail
FOCAL_NATIVE_END_NAMESPACE
