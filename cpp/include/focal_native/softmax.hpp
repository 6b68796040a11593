// Multiclass (softmax) focal loss kernels: loss, gradient, and both in one
// pass, for class-index targets (with optional label smoothing) and for dense
// targets (one-hot, smoothed or soft), with the class axis anywhere.
//
// The logits are seen as (outer, classes, inner) (see ClassLayout). Positions
// are processed in tiles: with inner == 1 and long rows (kRowsMinClasses or
// more) the loops over classes vectorize; with inner > 1 (NCHW segmentation)
// a tile is a run of consecutive inner positions and the loops over positions
// vectorize, with no copy; short rows (inner == 1, few classes: see
// index_rows_mode) are transposed a tile at a time into a class-major buffer
// and then treated like NCHW data. Formulas: ../shared/NUMERICS.md ("Softmax").
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>

#include "common.hpp"
#include "detail/config.hpp"
#include "detail/fpenv.hpp"
#include "detail/math.hpp"
#include "detail/parallel.hpp"
#include "detail/sigmoid_elem.hpp"
#include "detail/sigmoid_f32.hpp"
#include "detail/transpose.hpp"
#include "sigmoid.hpp"

FOCAL_NATIVE_BEGIN_NAMESPACE
namespace detail {

inline constexpr std::int64_t kSoftmaxTile = 128;
inline constexpr std::int64_t kRowsMinClasses = 32;

// Class-index targets of float32 data transpose rows of up to
// kIndexTransposeClasses<float> - 1 classes (float64: kRowsMinClasses - 1),
// except rows of a whole number of 16-lane blocks. In rows mode a row's last,
// partial block costs as much as a full one (C = 33 ran at 1.63 ns/element
// fused on one core, C = 32 at 1.07); transposed, the cost grows with C:
// C = 33 1.06, 40 1.03, 47 0.98 (C = 48: 0.89 in rows, 0.96 transposed).
// float64 showed no such gain. Either way the tile buffer is 32 KiB.
template <class T>
inline constexpr std::int64_t kIndexTransposeClasses = std::is_same_v<T, float> ? 64 : 32;

template <class T>
FOCAL_NATIVE_INLINE bool index_rows_mode(std::int64_t C) noexcept {
  if constexpr (std::is_same_v<T, float>)
    return C >= kIndexTransposeClasses<T> || (C >= kRowsMinClasses && C % 16 == 0);
  else
    return C >= kRowsMinClasses;
}

struct SoftmaxConsts {
  const double* alpha;  // per-class weights or nullptr
  double alpha_scale;
  double gamma;
  double smooth_on;   // index targets with smoothing: y of the labelled class
  double smooth_off;  // ... and of every other class
  std::int64_t classes;
};

// (With alpha_scale == 1 the product is skipped, not merely exact: under
// flush-to-zero a subnormal class weight times 1 would come out as 0.)
FOCAL_NATIVE_INLINE double class_alpha(const SoftmaxConsts& c, std::int64_t k) noexcept {
  return c.alpha ? (c.alpha_scale == 1.0 ? c.alpha[k] : c.alpha[k] * c.alpha_scale)
                 : c.alpha_scale;
}

// exp(z - m) with the conventions that make infinite logits well defined:
// z == m gives exactly 1 (so +inf entries share the mass, an all -inf row is
// uniform), and NaN propagates.
FOCAL_NATIVE_INLINE double shifted(double z, double m) noexcept { return z == m ? 0.0 : z - m; }

// exp(z - m) for z <= m. For float64 data the rounding of z - m would be
// amplified by |z - m| in the exponential (hundreds of ulps for a row won by
// a margin of 500), so the difference is kept exactly as hi + lo (TwoSum)
// and exp(hi) (1 + lo) is returned. For float32 data z - m is exact in double.
// Loop: called in an `omp simd` loop (the selects then take the form that
// vectorizes, see loop_select); otherwise the conditional, faster in scalar
// code.
template <Prec P, bool Loop = false>
FOCAL_NATIVE_INLINE double exp_shifted(double z, double m) noexcept {
  if constexpr (P == Prec::full) {
    double hi, lo;
    two_sum(z, -m, hi, lo);
    const bool finite = hi > -std::numeric_limits<double>::infinity();
    if constexpr (Loop) {
      hi = loop_select(z == m, 0.0, hi);
      lo = loop_select((z == m) | !finite, 0.0, lo);
      return exp_nonpos<P, kLoopFlush>(hi) * (1.0 + lo);
    } else {
      hi = z == m ? 0.0 : hi;
      lo = (z == m || !finite) ? 0.0 : lo;
      return exp_nonpos<P>(hi) * (1.0 + lo);
    }
  } else {
    return exp_nonpos<P>(shifted(z, m));
  }
}

// exp(z - m) for float32 data z <= m in float arithmetic (16 lanes per
// 512-bit register): z - m is formed exactly as dh + dl (TwoSum), so the
// exponential of a class far below the maximum keeps its relative accuracy
// (its gradient is measured in its own ulps), and exp(dh + dl) is about
// 1 ulp. Only for rows that float_exp_ok admits: z and m finite and
// z - m >= -87, so no special values and no flush (z == m gives dh = dl = 0
// and exactly 1).
FOCAL_NATIVE_INLINE float exp_diff_f(float z, float m) noexcept {
  const float s = z - m;
  const float bb = s - z;
  const float err = (z - (s - bb)) + (-m - bb);
  return exp_inrange_f(s, err);
}

// Whether a row (or tile) of float32 data may take exp_diff_f: every
// exponential is then at least exp(-87) > FLT_MIN, so float arithmetic drops
// nothing (a term below FLT_MIN would be flushed, and C of them can add up to
// a normal loss). Infinite and NaN rows keep the double path and its
// conventions.
template <class T>
FOCAL_NATIVE_INLINE bool float_exp_ok(double m, double lo) noexcept {
  return std::is_same_v<T, float> && m - lo <= 87.0;
}

// 1 - p and log(1 - p) for a class with probability p = e / S, where
// s_other = S - e is known as a sum (never formed as S - e): for p <= 1/2,
// 1 - p is exact enough and log1p(-p) is accurate; for p > 1/2 (only the
// arg-max class) q = s_other / S and log q = log(s_other) - log S, kept as
// hi + lo because |log q| may be large.
// (Two functions rather than one returning a three-double struct: a struct
// returned in memory makes its local addressable, and GCC then privatizes it
// into a per-lane array in `omp simd` loops, whose stores keep them scalar.)
FOCAL_NATIVE_INLINE double one_minus_p(double p, double s_other, double inv_s) noexcept {
  return p > 0.5 ? s_other * inv_s : 1.0 - p;
}

struct HiLo {
  double hi, lo;
};

// One logarithm for both cases (a vector loop evaluates both arms): of
// s_other, or of u = fl(1 - p) with its rounding c added back as c/u
// (log1p_any's method, the same bits). Measured, float32 softmax finish at
// gamma = 2.5: 7.35 -> 6.2 ns per row.
template <Prec P>
FOCAL_NATIVE_INLINE HiLo log_one_minus_p(double p, double s_other, double log_s) noexcept {
  const bool big = p > 0.5;
  double u, c;
  two_sum(1.0, -p, u, c);
  double h, l;
  log_hilo<P>(big ? s_other : u, h, l);
  const double lq_small = h + (l + c / u);
  double sh, se;
  two_sum(h, -log_s, sh, se);
  return {big ? sh : lq_small, big ? se + l : 0.0};
}

// F = alpha q^g (g p (log p)/q - 1), the factor of the gradient, and the loss
// alpha y q^g (-log p), for one class with probability p and target weight y
// (HasY: dense or smoothed targets; otherwise y = 1) (NUMERICS.md).
struct FocalTerms {
  double loss;
  double f;
};

template <Prec P, GammaKind G, bool HasY = false>
FOCAL_NATIVE_INLINE FocalTerms focal_terms(double alpha, double p, double log_p, double q,
                                           HiLo lq, double gamma, double y = 1.0) noexcept {
  const double qg = pow_from_log<P, G>(q, lq.hi, lq.lo, gamma);
  double inner = -1.0;
  if constexpr (G != GammaKind::zero) {
    // (log p)/q -> -1 as q -> 0; p log p -> 0 as p -> 0.
    const double ratio = q == 0.0 ? -1.0 : log_p / q;
    const double t = p == 0.0 ? 0.0 : p * ratio;
    inner = mul_add(gamma, t, -1.0);
  }
  // The loss alpha y q^g (-log p), ordered so that no intermediate overflows
  // where the loss is finite (y, q^g <= 1) and, for alpha <= 1, none is
  // smaller than the loss: alpha (y (q^g (-log p))), so flush-to-zero cannot
  // drop a normal loss (a subnormal alpha times a large -log p survives).
  // A weight above 1 multiplies q^g first instead: (alpha q^g) (y (-log p)),
  // so it lifts q^g before -log p (~ q where q is small) can meet it.
  // A zero weight (alpha, y or q^g) wins over log p = -inf.
  const double L = -log_p;
  const double w = alpha * qg;
  bool zero = (alpha == 0.0) | (qg == 0.0);
  double loss;
  if constexpr (HasY) {
    zero = zero | (y == 0.0);
    loss = alpha > 1.0 ? w * (y * L) : alpha * (y * (qg * L));
  } else {
    (void)y;
    loss = alpha > 1.0 ? w * L : alpha * (qg * L);
  }
  return {zero ? 0.0 : loss, w * inner};
}

// A compensated sum (TwoSum per addition, eight interleaved lanes): for
// float64 data the sum of exponentials S_o enters q^gamma with its rounding
// multiplied by gamma, so it is accumulated to about one rounding in total.
struct CompensatedSum {
  double s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  double c[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  FOCAL_NATIVE_INLINE void add1(int l, double v) noexcept {
    const double t = s[l] + v;
    const double bb = t - s[l];
    c[l] += (s[l] - (t - bb)) + (v - bb);
    s[l] = t;
  }
  // v[0, m) followed by zeros up to the next multiple of 8 (adding 0 leaves
  // both s and c as they are, so the result is that of the m values alone):
  // whole blocks of 8, one vector operation per step. (With a scalar tail,
  // GCC 12 left the blocks scalar too: 7 scalar operations per element.)
  FOCAL_NATIVE_INLINE void add_padded(const double* v, std::int64_t m) noexcept {
    for (std::int64_t j = 0; j < m; j += 8) {
      FOCAL_NATIVE_SIMD
      for (int l = 0; l < 8; ++l) add1(l, v[j + l]);
    }
  }
  FOCAL_NATIVE_INLINE double total() const noexcept {
    double hi = 0.0, lo = 0.0;
    for (int l = 0; l < 8; ++l) {
      double e;
      two_sum(hi, s[l], hi, e);
      lo += e + c[l];
    }
    return hi + lo;
  }
};

inline constexpr std::int64_t kSumChunk = 256;

// park[j * stride] = v[j] rounded to T, in a loop of its own: a conversion
// to float of a value selected inside the exp loop is sunk into the select's
// arms by GCC, which under trapping math then leaves the whole loop scalar.
template <class T>
FOCAL_NATIVE_INLINE void park_values(const double* v, T* park, std::int64_t stride,
                                     std::int64_t m) noexcept {
  FOCAL_NATIVE_SIMD
  for (std::int64_t j = 0; j < m; ++j) park[j * stride] = static_cast<T>(v[j]);
}

// skip - k0 if it lies in [0, 16), else 16 (no branch).
FOCAL_NATIVE_INLINE int block_index(std::int64_t skip, std::int64_t k0) noexcept {
  const auto rel = static_cast<std::uint64_t>(skip - k0);  // negative: huge
  return static_cast<int>(rel < 16 ? rel : 16);
}

// One block of 16 classes of float32 data: eb[j] = exp(z[j] - m)
// (exp_diff_f), and acc[j] += eb[j] in double for j < lim, j != sk.
template <bool Tail>
FOCAL_NATIVE_INLINE void exp_block16_f(const float* z, float mf, int sk, int lim, float* eb,
                                       double* acc) noexcept {
  FOCAL_NATIVE_SIMD
  for (int j = 0; j < 16; ++j) {
    const float e = exp_diff_f(Tail ? (j < lim ? z[j] : mf) : z[j], mf);
    eb[j] = e;
    // Converted after a float product by a 0/1 weight: GCC sinks a
    // conversion of the exp's result (a select) into the select's arms,
    // and under trapping math then leaves the whole loop scalar. Only rows
    // that float_exp_ok admits come here: e is in [exp(-87), 1] (exactly 1
    // in the lanes past a partial block), so the product is exact.
    acc[j] += static_cast<double>(e * (j == sk || j >= lim ? 0.0f : 1.0f));
  }
}

// The 16 lanes of exp_block16_f's sums, added as a tree.
FOCAL_NATIVE_INLINE double lane_total16(double* acc) noexcept {
  for (int l = 0; l < 8; ++l) acc[l] += acc[l + 8];
  for (int l = 0; l < 4; ++l) acc[l] += acc[l + 4];
  for (int l = 0; l < 2; ++l) acc[l] += acc[l + 2];
  return acc[0] + acc[1];
}

// sum_exp_except's float path (FloatExp) for two rows of C classes at once,
// in the same order of summation: the two rows' blocks share a loop, so it
// carries two independent chains of dependent operations, not one.
template <bool Park>
FOCAL_NATIVE_INLINE void sum_exp_except_f2(const float* r0, const float* r1, std::int64_t C,
                                           float m0, float m1, std::int64_t skip0,
                                           std::int64_t skip1, float* p0, float* p1,
                                           double& s0, double& s1) noexcept {
  alignas(64) double a0[16] = {}, a1[16] = {};
  alignas(64) float e0[16], e1[16];
  const std::int64_t full = C & ~std::int64_t{15};
  for (std::int64_t k0 = 0; k0 < full; k0 += 16) {
    exp_block16_f<false>(r0 + k0, m0, block_index(skip0, k0), 16, e0, a0);
    exp_block16_f<false>(r1 + k0, m1, block_index(skip1, k0), 16, e1, a1);
    if constexpr (Park) {
      FOCAL_NATIVE_SIMD
      for (int j = 0; j < 16; ++j) p0[k0 + j] = e0[j];
      FOCAL_NATIVE_SIMD
      for (int j = 0; j < 16; ++j) p1[k0 + j] = e1[j];
    }
  }
  if (full < C) {
    const int rem = static_cast<int>(C - full);
    exp_block16_f<true>(r0 + full, m0, block_index(skip0, full), rem, e0, a0);
    exp_block16_f<true>(r1 + full, m1, block_index(skip1, full), rem, e1, a1);
    if constexpr (Park) {
      for (int j = 0; j < rem; ++j) p0[full + j] = e0[j];
      for (int j = 0; j < rem; ++j) p1[full + j] = e1[j];
    }
  }
  s0 = lane_total16(a0);
  s1 = lane_total16(a1);
}

// sum_{k != skip} exp(z(k) - m) over one position's classes (element k at
// row[k * stride]); compensated for float64 data. With Park, each exp(z(k) - m)
// is also stored (rounded to T) at park[k * stride], for the gradient pass.
// FloatExp (float32 data, contiguous rows): the exponentials in float.
template <Prec P, bool Park = false, bool FloatExp = false, class T>
FOCAL_NATIVE_INLINE double sum_exp_except(const T* row, std::int64_t stride, std::int64_t C,
                                          double m, std::int64_t skip,
                                          T* park = nullptr) noexcept {
  if constexpr (FloatExp) {
    static_assert(std::is_same_v<T, float>, "float exponentials are for float32 data");
    (void)stride;
    const float mf = static_cast<float>(m);  // m is the maximum of float data
    // Blocks of 16 classes, each exponential added (in double) to lane
    // j % 16 of acc, and the lanes summed as a tree at the end: one order
    // of summation whatever the instruction set or the parking, and no
    // `omp simd` reduction, which GCC finishes with 16 dependent scalar
    // additions per row. The label's position in a block is found without
    // a branch (16: not in it): from a conditional `-1`, GCC made a copy of
    // the loop for the blocks without the label and left that copy scalar.
    // The last, partial block is read with a guarded read (a masked load
    // with AVX2 and AVX-512), its lanes past the row standing in for the
    // maximum, with weight 0.
    alignas(64) double acc[16] = {};
    alignas(64) float eb[16];
    const std::int64_t full = C & ~std::int64_t{15};
    for (std::int64_t k0 = 0; k0 < full; k0 += 16) {
      const int sk = block_index(skip, k0);
      exp_block16_f<false>(row + k0, mf, sk, 16, eb, acc);
      if constexpr (Park) {
        FOCAL_NATIVE_SIMD
        for (int j = 0; j < 16; ++j) park[k0 + j] = eb[j];
      }
    }
    if (full < C) {
      const int rem = static_cast<int>(C - full);
      const int sk = block_index(skip, full);
      exp_block16_f<true>(row + full, mf, sk, rem, eb, acc);
      if constexpr (Park)
        for (int j = 0; j < rem; ++j) park[full + j] = eb[j];
    }
    return lane_total16(acc);
  } else if constexpr (P == Prec::full) {
    CompensatedSum cs;
    alignas(64) double eb[kSumChunk];
    for (std::int64_t k0 = 0; k0 < C; k0 += kSumChunk) {
      const std::int64_t mk = C - k0 < kSumChunk ? C - k0 : kSumChunk;
      FOCAL_NATIVE_SIMD
      for (std::int64_t j = 0; j < mk; ++j) {
        const double e = exp_shifted<P, true>(static_cast<double>(row[(k0 + j) * stride]), m);
        if constexpr (Park) park[(k0 + j) * stride] = static_cast<T>(e);  // T = double
        eb[j] = loop_select(k0 + j == skip, 0.0, e);
      }
      for (std::int64_t j = mk; j % 8 != 0; ++j) eb[j] = 0.0;
      cs.add_padded(eb, mk);
    }
    return cs.total();
  } else {
    // Chunks through a buffer whether or not the values are parked: the same
    // loop (so the same summation order) for loss-only and gradient calls,
    // and the conversion to T out of the exp loop (see park_values).
    double so = 0.0;
    alignas(64) double eb[kSumChunk];
    for (std::int64_t k0 = 0; k0 < C; k0 += kSumChunk) {
      const std::int64_t mk = C - k0 < kSumChunk ? C - k0 : kSumChunk;
      double part = 0.0;
      FOCAL_NATIVE_SIMD_REDUCE(+, part)
      for (std::int64_t j = 0; j < mk; ++j) {
        const double e = exp_shifted<P, true>(static_cast<double>(row[(k0 + j) * stride]), m);
        eb[j] = e;
        part += k0 + j == skip ? 0.0 : e;
      }
      so += part;
      if constexpr (Park) park_values(eb, park + k0 * stride, stride, mk);
    }
    return so;
  }
}

// sum_exp_except<Prec::full> for two float64 rows of C classes (stride 1,
// no parking), in the same order of summation as each row alone: the rows
// share the exponential loop, and their compensated sums and final totals
// are two independent chains instead of one. (Not used where the
// exponentials are parked: there it measured 1-4 % slower.)
FOCAL_NATIVE_INLINE void sum_exp_except_d2(const double* r0, const double* r1, std::int64_t C,
                                           double m0, double m1, std::int64_t skip0,
                                           std::int64_t skip1, double& s0, double& s1) noexcept {
  CompensatedSum cs0, cs1;
  alignas(64) double e0[kSumChunk], e1[kSumChunk];
  for (std::int64_t k0 = 0; k0 < C; k0 += kSumChunk) {
    const std::int64_t mk = C - k0 < kSumChunk ? C - k0 : kSumChunk;
    FOCAL_NATIVE_SIMD
    for (std::int64_t j = 0; j < mk; ++j) {
      const double a = exp_shifted<Prec::full, true>(r0[k0 + j], m0);
      const double b = exp_shifted<Prec::full, true>(r1[k0 + j], m1);
      e0[j] = loop_select(k0 + j == skip0, 0.0, a);
      e1[j] = loop_select(k0 + j == skip1, 0.0, b);
    }
    for (std::int64_t j = mk; j % 8 != 0; ++j) e0[j] = e1[j] = 0.0;
    cs0.add_padded(e0, mk);
    cs1.add_padded(e1, mk);
  }
  s0 = cs0.total();
  s1 = cs1.total();
}

// x 2^-k for k >= 0, in exact steps while x stays normal.
FOCAL_NATIVE_INLINE double scale_down_pow2(double x, int k) noexcept {
  for (; k > 1000; k -= 1000) x *= 0x1p-1000;
  return x * double_of(static_cast<std::uint64_t>(1023 - k) << 52);
}

// float64 rows won by more than -ln(DBL_MIN) = 708.4: the exponentials of
// the classes that far below the maximum are flushed to 0 by exp_nonpos (and
// flush-to-zero), but when the maximum is the class left out of the sum,
// S_o = sum_{k != skip} exp(z_k - m) is itself near the bottom of the range,
// and those terms are ulp-sized next to it (1 - p_skip = S_o / S, and
// -log p_skip = log1p(S_o), are normal numbers). That takes a row won by a
// margin m - m2 (m2: the largest other logit) near 708 - ln C - 37 or more;
// below 600 the flushed terms are under 2^-100 of S_o. The kernels decide
// this from m and m2, which their maximum passes track, before any
// exponential is taken (so the logits are still unread by a gradient written
// in place); rows that merely contain very negative (masked) logits do not
// qualify, nor do rows whose other logits are all -inf (S_o = 0 exactly).
FOCAL_NATIVE_INLINE bool needs_scaled_sum(double zskip, double m, double m2) noexcept {
  // (& rather than &&: no branches, so the loops that test it vectorize.)
  return (zskip == m) & (m - m2 > 600.0) & (m <= std::numeric_limits<double>::max()) &
         (m2 > -std::numeric_limits<double>::infinity());
}

// sum_{k != skip} exp(z(k) - m) for float64 data with a finite maximum m
// and m2 = max_{k != skip} z(k), finite (needs_scaled_sum), without the
// flush: each term is evaluated as exp(z_k - m + K ln2), with K chosen from
// m2 so that the largest term is in [1/4, 1), summed (compensated), and the
// sum is multiplied by 2^-K (exact where the result is normal). The terms
// then lost to the flush are below 2^-(K + 1022), far below the last bit of
// the sum.
template <class T>
FOCAL_NATIVE_INLINE double sum_exp_scaled(const T* row, std::int64_t stride, std::int64_t C,
                                          double m, double m2, std::int64_t skip) noexcept {
  // K with K ln2 <= -(m2 - m) - ln2: the scaled exponents stay <= 0 (the
  // rounding of m2 - m is far inside that margin). Past 2000 the sum is far
  // below the double range anyway.
  const double kf = (m - m2) * 0x1.71547652b82fep0 - 1.0;
  const int K = kf < 0.0 ? 0 : (kf > 2000.0 ? 2000 : static_cast<int>(kf));
  const double kd = static_cast<double>(K);
  double sum = 0.0, comp = 0.0;
  for (std::int64_t k = 0; k < C; ++k) {
    if (k == skip) continue;
    const double v = static_cast<double>(row[k * stride]);
    double hi, lo;
    two_sum(v, -m, hi, lo);  // v - m exactly (v finite or -inf)
    if (!(hi > -std::numeric_limits<double>::infinity())) continue;
    double x, err;
    two_sum(hi, kd * kLn2Hi, x, err);  // kd * kLn2Hi is exact (K < 2^11)
    const double xl = (lo + err) + kd * kLn2Lo;
    const double e = exp_nonpos<Prec::full>(x < 0.0 ? x : 0.0) * (1.0 + xl);
    double t, te;
    two_sum(sum, e, t, te);
    sum = t;
    comp += te;
  }
  return scale_down_pow2(sum + comp, K);
}

// Per-position state of a tile.
struct SoftmaxTile {
  double m[kSoftmaxTile];      // row maximum
  float mf[kSoftmaxTile];      // ... as a float (float32 data, columns mode)
  double s[kSoftmaxTile];      // sum of exp over the other classes (index: k != c; dense: k != argmax)
  double sc[kSoftmaxTile];     // its compensation (float64 data); dense: the largest other logit
  double a[kSoftmaxTile];      // index: the labelled class's weight alpha_c; dense: the arg-max (as a double)
  double zc[kSoftmaxTile];     // index: logit of the labelled class
  std::int64_t c[kSoftmaxTile];    // index: label (-1 when ignored or bad); dense: argmax
  double f[kSoftmaxTile];      // gradient factor (index) / log S (dense)
  double q[kSoftmaxTile];      // index: 1 - p_c; dense (columns): T_rest as it is summed
  double inv_s[kSoftmaxTile];  // 1 / S
  double t_all[kSoftmaxTile];  // dense: T = sum_k y_k F_k
  double fq[kSoftmaxTile];     // index: gradient of the labelled class, F q
  double nfs[kSoftmaxTile];    // index: -F / S (times exp(z_k - m): gradient of class k)
  double scale[kSoftmaxTile];  // gradient scale of the position (0 when ignored), times 1/post
  double post[kSoftmaxTile];   // powers of two the gradient is multiplied by last (when
  double post2[kSoftmaxTile];  // big): post, then post2
  bool big;                    // some scale is split as scale * post (see split_big_scales)
  std::int64_t live[kSoftmaxTile];  // 1 when the position counts (not ignored, label valid); 64-bit like the doubles, so loops vectorize
  std::int64_t n_live;             // how many positions of the tile count
  double loss[kSoftmaxTile];
};

// Where element (t, k) of a tile lives: rows mode (inner == 1): base + t*C + k;
// columns mode: base + k*inner + t.
struct TileGeom {
  std::int64_t base;
  std::int64_t tstride;
  std::int64_t kstride;
  std::int64_t n;  // positions in the tile
  bool rows;       // loop over classes innermost (long contiguous rows)
  FOCAL_NATIVE_INLINE std::int64_t at(std::int64_t t, std::int64_t k) const noexcept {
    return base + t * tstride + k * kstride;
  }
};

// The tile that starts at position pos and ends at `end` at the latest: up
// to kSoftmaxTile positions of one `o` (rows mode: rows), and the offset of
// its first element (position pos, class 0).
struct TileSpan {
  std::int64_t base;
  std::int64_t n;
};

FOCAL_NATIVE_INLINE TileSpan tile_span(std::int64_t pos, std::int64_t end, std::int64_t C,
                                       std::int64_t inner) noexcept {
  const std::int64_t o_idx = pos / inner;
  const std::int64_t i0 = pos - o_idx * inner;
  std::int64_t n = end - pos;
  if (inner > 1 && n > inner - i0) n = inner - i0;
  if (n > kSoftmaxTile) n = kSoftmaxTile;
  return {inner == 1 ? pos * C : o_idx * C * inner + i0, n};
}

// The next tile's logits (and gradient output), fetched into cache while the
// columns-mode exponential pass of this tile (class-index targets) computes:
// class k's part of it at each class. Without it, the copy of a tile of
// short rows waits on memory with nothing to compute (README, "Layouts").
// Only addresses inside the arrays are formed: the next tile lies within
// the array, and, threaded, within this block (the next block is another
// thread's, and prefetching it for writing would take its cache lines).
// Above this size (the logits alone) a call's data is taken to come from
// memory rather than cache (the L2 of the machines measured holds 1-2 MiB).
inline constexpr std::int64_t kStreamBytes = std::int64_t{1} << 20;
// How far ahead rows mode reads when streaming (sums_rows): 1, 4 and 8 KiB
// measured worse than 2 for rows of 80 and 1000 float32 or 80 float64.
inline constexpr std::int64_t kRowAheadBytes = 2048;

struct TilePrefetch {
  const char* r = nullptr;  // class k's part: [r + k * stride, + bytes)
  const char* w = nullptr;  // the same offsets in the gradient output, or null
  std::int64_t stride = 0;
  std::int64_t bytes = 0;
  // The arrays exceed kStreamBytes: the data comes from memory, and the
  // prefetches are spread over the classes (see sums_cols; rows mode reads
  // ahead, see sums_rows).
  bool streaming = false;
  // Positions after this tile that this tile's pass may fetch (rows mode):
  // in the array and, threaded, in this thread's block.
  std::int64_t rows_after = 0;
  // Each line of [p, p + bytes): steps of 64 from p, and the last byte
  // (p need not be 64-byte aligned).
  template <bool Write>
  static FOCAL_NATIVE_INLINE void line(const char* a) noexcept {
    if constexpr (Write)
      FOCAL_NATIVE_PREFETCH_W(a);
    else
      FOCAL_NATIVE_PREFETCH_R(a);
  }
  template <bool Write>
  static FOCAL_NATIVE_INLINE void lines(const char* p, std::int64_t bytes) noexcept {
    for (std::int64_t o = 0; o < bytes; o += 64) line<Write>(p + o);
    line<Write>(p + (bytes - 1));
  }
  FOCAL_NATIVE_INLINE void fetch(std::int64_t k) const noexcept {
    if (r == nullptr || bytes <= 0) return;
    const std::int64_t off = k * stride;
    lines<false>(r + off, bytes);
    if (w != nullptr) lines<true>(w + off, bytes);
  }
};

// ---------------------------------------------------------------------------
// Class-index targets without label smoothing.

template <class T, GammaKind G, bool StoreLoss, bool WantGrad, bool Up>
struct IndexKernel {
  static constexpr Prec P = prec_for<T>;

  // The logit of each position's labelled class (columns mode), read after
  // the maximum pass, while the tile is in cache, and before the exponentials
  // are parked: with a gradient written in place, parking overwrites the
  // logits. (Rows mode reads it after the row's maximum pass, before its
  // sums.)
  static FOCAL_NATIVE_INLINE void label_logits(const T* z, const TileGeom& g,
                                               SoftmaxTile& tl) noexcept {
    for (std::int64_t t = 0; t < g.n; ++t) {
      const std::int64_t c = tl.c[t];
      tl.zc[t] = c >= 0 ? static_cast<double>(z[g.at(t, c)]) : 0.0;
    }
  }
  // The same for one row (rows mode; 0 for an ignored position).
  static FOCAL_NATIVE_INLINE double label_logit(const T* row, std::int64_t c) noexcept {
    return c >= 0 ? static_cast<double>(row[c]) : 0.0;
  }

  // Pass 1 and 2: maximum, then the sums of exponentials. When the gradient
  // is wanted, each exp(z_k - m) is parked (rounded to T) in the gradient
  // output at its own index (for short rows: in the transposed tile buffer,
  // which the gradient pass then overwrites), so the gradient pass needs no
  // second exp: the gradient output may alias the logits, and element k is
  // read before it is written. Loss-only calls compute the same sums, so the
  // loss has the same bits either way.
  // Packed: z is the class-major copy of a tile of short rows (class k at
  // z + k * kSoftmaxTile; see index_tile).
  template <bool Park, bool Packed = false>
  static FOCAL_NATIVE_INLINE void sums(const T* z, T* go, const TileGeom& g, std::int64_t C,
                                       SoftmaxTile& tl, const TilePrefetch& pf) noexcept {
    if (g.rows)
      sums_rows<Park>(z, go, g, C, tl, pf);
    else
      sums_cols<Park, Packed>(z, go, g, C, tl, pf);
  }

  // Rows mode: vectorized over the classes of a row. Float32 rows go two at
  // a time where they can: the two rows' maximum passes share one loop and
  // their sums another (sum_exp_except_f2), so each loop carries two
  // independent chains of dependent operations, not one. Float64 rows whose
  // exponentials are not parked go in pairs too, for their sums only (each
  // row keeps its own row_stats pass): sum_exp_except_d2.
  // Streaming (data from memory): the row kRowAheadBytes on (at least 2
  // rows) is fetched while this one computes, in this tile or the next ones
  // up to pf.rows_after positions past it. Measured, one core, float32
  // rows of 1000 classes, forward: 9.4 -> 6.0-6.3 ms for 20000 rows;
  // two cores, 250000 rows of 80: 7.0-7.3 -> 4.1-4.3 ms (the hardware
  // prefetcher alone left the memory idle while a row's exponentials ran).
  template <bool Park>
  static FOCAL_NATIVE_INLINE void sums_rows(const T* z, T* go, const TileGeom& g, std::int64_t C,
                                            SoftmaxTile& tl, const TilePrefetch& pf) noexcept {
    const std::int64_t row_bytes = C * static_cast<std::int64_t>(sizeof(T));
    std::int64_t ahead = (kRowAheadBytes + row_bytes - 1) / row_bytes;
    ahead = ahead < 2 ? 2 : ahead + (ahead & 1);  // even: float rows go in pairs
    const std::int64_t limit = pf.streaming ? g.n + pf.rows_after : 0;
    std::int64_t t = 0;
    if constexpr (std::is_same_v<T, float>) {
      for (; t + 1 < g.n; t += 2) {
        const float* r0 = z + g.at(t, 0);
        const float* r1 = z + g.at(t + 1, 0);
        fetch_rows<2>(z, g, t + ahead, limit, row_bytes);
        float m0 = -std::numeric_limits<float>::infinity(), m1 = m0;
        float l0 = std::numeric_limits<float>::infinity(), l1 = l0;
        int nan = 0;
        FOCAL_NATIVE_PRAGMA(omp simd reduction(max : m0, m1) reduction(min : l0, l1) reduction(| : nan))
        for (std::int64_t k = 0; k < C; ++k) {
          const float v0 = r0[k], v1 = r1[k];
          m0 = v0 > m0 ? v0 : m0;
          l0 = v0 < l0 ? v0 : l0;
          m1 = v1 > m1 ? v1 : m1;
          l1 = v1 < l1 ? v1 : l1;
          nan |= (v0 != v0) | (v1 != v1);
        }
        RowStats a, b;
        a.mt = m0, a.lt = l0, b.mt = m1, b.lt = l1;
        if (nan == 0 && float_exp_ok<T>(a.mt, a.lt) && float_exp_ok<T>(b.mt, b.lt)) {
          const std::int64_t c0 = tl.c[t], c1 = tl.c[t + 1];
          tl.zc[t] = label_logit(r0, c0);  // before parking
          tl.zc[t + 1] = label_logit(r1, c1);
          tl.m[t] = static_cast<double>(a.mt);
          tl.m[t + 1] = static_cast<double>(b.mt);
          float* p0 = Park ? go + g.at(t, 0) : nullptr;  // go may be null without parking
          float* p1 = Park ? go + g.at(t + 1, 0) : nullptr;
          sum_exp_except_f2<Park>(r0, r1, C, a.mt, b.mt, c0, c1, p0, p1, tl.s[t], tl.s[t + 1]);
        } else {
          a.nan = nan != 0 && row_has_nan(r0, C);
          b.nan = nan != 0 && row_has_nan(r1, C);
          row_sums<Park>(z, go, g, C, tl, t, a);
          row_sums<Park>(z, go, g, C, tl, t + 1, b);
        }
      }
    }
    if constexpr (std::is_same_v<T, double> && !Park) {
      // Float64 rows without parking (loss-only calls, and gradient tiles
      // with split scales, which recompute the exponentials): two at a time
      // where neither needs the scaled sum (sum_exp_except_d2; the same
      // values as row_sums).
      // Measured, one core, 250000 x 80, forward: 20.3-20.8 -> 18.9 ms;
      // two cores 9.9 -> 9.3 ms.
      for (; t + 1 < g.n; t += 2) {
        const double* r0 = z + g.at(t, 0);
        const double* r1 = z + g.at(t + 1, 0);
        fetch_rows<2>(z, g, t + ahead, limit, row_bytes);
        const std::int64_t c0 = tl.c[t], c1 = tl.c[t + 1];
        const RowStats a = row_stats(r0, C, c0), b = row_stats(r1, C, c1);
        const double z0 = label_logit(r0, c0), z1 = label_logit(r1, c1);
        const double m0 = a.max_or_nan(), m1 = b.max_or_nan();
        if ((c0 >= 0 && needs_scaled_sum(z0, m0, a.lt)) ||
            (c1 >= 0 && needs_scaled_sum(z1, m1, b.lt))) {
          row_sums<Park>(z, go, g, C, tl, t, a);
          row_sums<Park>(z, go, g, C, tl, t + 1, b);
          continue;
        }
        tl.zc[t] = z0;
        tl.zc[t + 1] = z1;
        tl.m[t] = m0;
        tl.m[t + 1] = m1;
        sum_exp_except_d2(r0, r1, C, m0, m1, c0, c1, tl.s[t], tl.s[t + 1]);
      }
    }
    for (; t < g.n; ++t) {
      fetch_rows<1>(z, g, t + ahead, limit, row_bytes);
      row_sums<Park>(z, go, g, C, tl, t, row_stats(z + g.at(t, 0), C, tl.c[t]));
    }
  }

  // Rows first, ..., first + N - 1 (of this tile or the next ones), those
  // before limit (sums_rows' read-ahead). (The same as a lambda in
  // sums_rows, capturing by reference, measured 40 % slower with GCC 12:
  // 250000 rows of 80 float32, two cores, forward, 3.9 -> 5.9 ms.)
  template <int N>
  static FOCAL_NATIVE_INLINE void fetch_rows(const T* z, const TileGeom& g, std::int64_t first,
                                             std::int64_t limit, std::int64_t row_bytes) noexcept {
    const std::int64_t n = limit - first < N ? limit - first : N;
    if (n > 0)
      TilePrefetch::lines<false>(reinterpret_cast<const char*>(z + g.at(first, 0)),
                                 n * row_bytes);
  }

  // A row's maximum and minimum, in T (exact; 16 lanes for float data), and
  // whether it holds a NaN. For float64 data (no float exponentials) lt is
  // the largest logit other than the label's (see needs_scaled_sum).
  struct RowStats {
    T mt = -std::numeric_limits<T>::infinity();
    T lt = P == Prec::full ? -std::numeric_limits<T>::infinity()
                           : std::numeric_limits<T>::infinity();
    bool nan = false;
    // The maximum the sums take: NaN for a row holding one.
    double max_or_nan() const noexcept {
      return nan ? std::numeric_limits<double>::quiet_NaN() : static_cast<double>(mt);
    }
  };
  static FOCAL_NATIVE_INLINE RowStats row_stats(const T* row, std::int64_t C,
                                                std::int64_t c) noexcept {
    T mt = -std::numeric_limits<T>::infinity();
    T lt = std::numeric_limits<T>::infinity();
    int nan = 0;
    if constexpr (P == Prec::full) {
      lt = -std::numeric_limits<T>::infinity();
      FOCAL_NATIVE_PRAGMA(omp simd reduction(max : mt, lt) reduction(| : nan))
      for (std::int64_t k = 0; k < C; ++k) {
        const T v = row[k];
        mt = v > mt ? v : mt;
        lt = (v > lt && k != c) ? v : lt;
        nan |= v != v;
      }
    } else {
      (void)c;
      FOCAL_NATIVE_PRAGMA(omp simd reduction(max : mt) reduction(min : lt) reduction(| : nan))
      for (std::int64_t k = 0; k < C; ++k) {
        const T v = row[k];
        mt = v > mt ? v : mt;
        lt = v < lt ? v : lt;
        nan |= v != v;
      }
    }
    RowStats st;
    st.mt = mt;
    st.lt = lt;
    st.nan = nan != 0;
    return st;
  }
  static FOCAL_NATIVE_INLINE bool row_has_nan(const T* row, std::int64_t C) noexcept {
    int nan = 0;
    FOCAL_NATIVE_PRAGMA(omp simd reduction(| : nan))
    for (std::int64_t k = 0; k < C; ++k) nan |= row[k] != row[k];
    return nan != 0;
  }

  // The sum of row t's exponentials, from its statistics.
  template <bool Park>
  static FOCAL_NATIVE_INLINE void row_sums(const T* z, T* go, const TileGeom& g, std::int64_t C,
                                           SoftmaxTile& tl, std::int64_t t,
                                           const RowStats& st) noexcept {
    const T* row = z + g.at(t, 0);
    const std::int64_t c = tl.c[t];
    tl.zc[t] = label_logit(row, c);  // before parking
    const double m = st.max_or_nan();
    const double lo = static_cast<double>(st.lt);  // float64: the largest other logit
    tl.m[t] = m;
    T* park = Park ? go + g.at(t, 0) : nullptr;  // go may be null without parking
    double scaled = -1.0;  // read before any parking
    if constexpr (P == Prec::full)
      if (c >= 0 && needs_scaled_sum(tl.zc[t], m, lo)) scaled = sum_exp_scaled(row, 1, C, m, lo, c);
    if (float_exp_ok<T>(m, lo))
      tl.s[t] = sum_exp_except<P, Park, std::is_same_v<T, float>>(row, 1, C, m, c, park);
    else
      tl.s[t] = sum_exp_except<P, Park, false>(row, 1, C, m, c, park);
    if (scaled >= 0.0) tl.s[t] = scaled;
  }

  // Columns mode (g.tstride == 1: NCHW data, or a class-major copy of short
  // rows): vectorized over the positions of the tile, class by class.
  // Packed (the copy, float data): the class stride is the constant
  // kSoftmaxTile, and the maximum and exponential passes run the classes of
  // a position in an inner loop, which GCC vectorizes as an outer loop over
  // the positions: the running maximum, minimum, label logit and sum stay in
  // registers instead of being loaded and stored at every class. (GCC
  // vectorizes that form only when the inner loop's stride is a constant,
  // and the inner loop is a do loop: C >= 1, the entry points reject zero
  // classes.) Measured, one core, 256 rows of 10 float32 classes, fused:
  // 4.40 -> 3.67 us; rows of 2 to 40 classes 5-25 % faster (float64 showed
  // no gain, and keeps the loops class by class).
  template <bool Park, bool Packed>
  static FOCAL_NATIVE_INLINE void sums_cols(const T* z, T* go, const TileGeom& g, std::int64_t C,
                                            SoftmaxTile& tl, const TilePrefetch& pf) noexcept {
    constexpr std::int64_t ts = 1;
    {
      // Float exponentials for the whole tile when every position allows them.
      bool use_f = false;
      alignas(64) std::int32_t c32[kSoftmaxTile];  // labels, 32-bit (float path)
      FOCAL_NATIVE_SIMD
      for (std::int64_t t = 0; t < g.n; ++t) {
        tl.m[t] = -std::numeric_limits<double>::infinity();
        tl.sc[t] = std::numeric_limits<double>::infinity();  // a row statistic, then compensation
        tl.s[t] = 0.0;
      }
      [[maybe_unused]] bool have_zc = false;
      if constexpr (std::is_same_v<T, float>) {
        // Maximum and minimum of float data in float (16 lanes; exact), then
        // widened once.
        alignas(64) float mx[kSoftmaxTile], mn[kSoftmaxTile];
        [[maybe_unused]] alignas(64) float nanv[kSoftmaxTile];  // Packed: a NaN of the position, or 0
        FOCAL_NATIVE_SIMD
        for (std::int64_t t = 0; t < g.n; ++t) c32[t] = static_cast<std::int32_t>(tl.c[t]);
        if constexpr (Packed) {
          // (Packed: C < kIndexTransposeClasses, so labels fit in 32 bits.)
          const int nc = static_cast<int>(C);
          alignas(64) float zcf[kSoftmaxTile];
          FOCAL_NATIVE_SIMD
          for (std::int64_t t = 0; t < g.n; ++t) {
            float m = -std::numeric_limits<float>::infinity();
            float l = std::numeric_limits<float>::infinity();
            float zc = 0.0f;
            float nan = 0.0f;
            const std::int32_t c = c32[t];
            int k = 0;
            do {
              const float v = z[k * kSoftmaxTile + t];
              // A NaN is kept aside, off the chain of the maximum (whose
              // latency bounds this loop). (An integer flag here, or a
              // conditional after the loop, stops GCC vectorizing it.)
              m = v > m ? v : m;
              l = v < l ? v : l;
              nan = v != v ? v : nan;
              zc = k == c ? v : zc;  // the labelled class's logit (0 when ignored)
            } while (++k < nc);
            mx[t] = m;
            nanv[t] = nan;  // (combined with m below: here it would stop the vectorization)
            mn[t] = l;
            zcf[t] = zc;
          }
          FOCAL_NATIVE_SIMD
          for (std::int64_t t = 0; t < g.n; ++t) tl.zc[t] = static_cast<double>(zcf[t]);
          have_zc = true;
        } else {
          FOCAL_NATIVE_SIMD
          for (std::int64_t t = 0; t < g.n; ++t) {
            mx[t] = -std::numeric_limits<float>::infinity();
            mn[t] = std::numeric_limits<float>::infinity();
          }
          for (std::int64_t k = 0; k < C; ++k) {
            const T* col = z + g.at(0, k);
            FOCAL_NATIVE_SIMD
            for (std::int64_t t = 0; t < g.n; ++t) {
              const float v = col[t * ts];
              const float m = mx[t];
              mx[t] = (v > m || v != v) ? v : m;  // NaN sticks, as below
              mn[t] = v < mn[t] ? v : mn[t];
            }
          }
        }
        int ok = 1;
        FOCAL_NATIVE_SIMD_REDUCE(&, ok)
        for (std::int64_t t = 0; t < g.n; ++t) {
          float mt = mx[t];
          if constexpr (Packed) mt = nanv[t] != nanv[t] ? nanv[t] : mt;  // NaN sticks
          tl.m[t] = static_cast<double>(mt);
          tl.sc[t] = static_cast<double>(mn[t]);
          ok &= float_exp_ok<T>(tl.m[t], tl.sc[t]) ? 1 : 0;
        }
        // (32-bit labels: one compare per 16 floats in the exp loop, not two.)
        use_f = ok != 0 && C <= std::numeric_limits<std::int32_t>::max();
      } else {
        // float64: the maximum, and in tl.sc the largest logit other than the
        // label's (see needs_scaled_sum).
        FOCAL_NATIVE_SIMD
        for (std::int64_t t = 0; t < g.n; ++t) tl.sc[t] = -std::numeric_limits<double>::infinity();
        for (std::int64_t k = 0; k < C; ++k) {
          const T* col = z + g.at(0, k);
          FOCAL_NATIVE_SIMD
          for (std::int64_t t = 0; t < g.n; ++t) {
            const double v = static_cast<double>(col[t * ts]);
            const double m = tl.m[t];
            // NaN sticks once seen: m becomes NaN and every comparison keeps it.
            tl.m[t] = (v > m || v != v) ? v : m;
            tl.sc[t] = ((v > tl.sc[t]) & (k != tl.c[t])) ? v : tl.sc[t];
          }
        }
      }
      if (!have_zc) label_logits(z, g, tl);
      // float64 rows at the bottom of the range (see needs_scaled_sum):
      // their sums, before the exponentials are parked. (tl.sc: the largest
      // other logit.)
      alignas(64) double scaled[kSoftmaxTile];
      bool any_scaled = false;
      if constexpr (P == Prec::full) {
        int any = 0;
        FOCAL_NATIVE_PRAGMA(omp simd reduction(| : any))
        for (std::int64_t t = 0; t < g.n; ++t)
          any |= (tl.c[t] >= 0) & needs_scaled_sum(tl.zc[t], tl.m[t], tl.sc[t]);
        any_scaled = any != 0;
        if (any_scaled) {
          for (std::int64_t t = 0; t < g.n; ++t) {
            const std::int64_t c = tl.c[t];
            scaled[t] = c >= 0 && needs_scaled_sum(tl.zc[t], tl.m[t], tl.sc[t])
                            ? sum_exp_scaled(z + g.at(t, 0), g.kstride, C, tl.m[t], tl.sc[t], c)
                            : -1.0;
          }
        }
      }
      FOCAL_NATIVE_SIMD
      for (std::int64_t t = 0; t < g.n; ++t) {
        tl.mf[t] = static_cast<float>(tl.m[t]);
        tl.sc[t] = 0.0;
      }
      if constexpr (Packed && Park && std::is_same_v<T, float>) {
        if (use_f && !pf.streaming) {
          const int nc = static_cast<int>(C);
          // The same operations, in the same order, as the loop below; in
          // chunks of 16 positions, each followed by its share of the next
          // tile's prefetches (all at once, they outran the hardware's queue:
          // rows of 21 out of cache, loss-only, 0.98 -> 1.34 ns/element).
          // Loss-only calls keep the loop below: in cache this one gained
          // nothing there, and out of cache (rows of 21) it lost 15 %; so do
          // streaming calls, whose prefetches it spreads less well (rows of
          // 21 out of cache, fused: 1.62 -> 1.82 ns/element).
          constexpr std::int64_t kChunk = 16;
          const std::int64_t nchunks = (g.n + kChunk - 1) / kChunk;
          std::int64_t kf = 0;
          for (std::int64_t j = 0; j < nchunks; ++j) {
            const std::int64_t t1 = (j + 1) * kChunk < g.n ? (j + 1) * kChunk : g.n;
            FOCAL_NATIVE_SIMD
            for (std::int64_t t = j * kChunk; t < t1; ++t) {
              const float mf = tl.mf[t];
              const std::int32_t c = c32[t];
              double s = 0.0;
              int k = 0;
              do {
                const float e = exp_diff_f(z[k * kSoftmaxTile + t], mf);
                if constexpr (Park) go[k * kSoftmaxTile + t] = e;
                s += static_cast<double>(e * (k == c ? 0.0f : 1.0f));
              } while (++k < nc);
              tl.s[t] = s;
            }
            for (const std::int64_t kend = (j + 1) * C / nchunks; kf < kend; ++kf) pf.fetch(kf);
          }
          return;
        }
      }
      alignas(64) double eb[kSoftmaxTile];
      for (std::int64_t k = 0; k < C; ++k) {
        const T* col = z + g.at(0, k);
        T* pcol = Park ? go + g.at(0, k) : nullptr;  // go may be null without parking
        pf.fetch(k);
        if constexpr (std::is_same_v<T, float>) {
          if (use_f) {
            const auto k32 = static_cast<std::int32_t>(k);
            // Float exponentials (exp_diff_f), parked as they are, summed in
            // double in class order (the same order with or without parking).
            FOCAL_NATIVE_SIMD
            for (std::int64_t t = 0; t < g.n; ++t) {
              const float e = exp_diff_f(col[t * ts], tl.mf[t]);
              if constexpr (Park) pcol[t * ts] = e;
              tl.s[t] += static_cast<double>(e * (k32 == c32[t] ? 0.0f : 1.0f));  // see sum_exp_except
            }
            continue;
          }
        }
        FOCAL_NATIVE_SIMD
        for (std::int64_t t = 0; t < g.n; ++t) {
          const double e = exp_shifted<P, true>(static_cast<double>(col[t * ts]), tl.m[t]);
          if constexpr (Park) {
            if constexpr (std::is_same_v<T, double>)
              pcol[t * ts] = e;
            else
              eb[t] = e;  // converted in a loop of its own (see park_values)
          }
          const double v = loop_select(k == tl.c[t], 0.0, e);
          if constexpr (P == Prec::full) {
            // Compensated (TwoSum) accumulation, see CompensatedSum.
            const double sum = tl.s[t] + v;
            const double bb = sum - tl.s[t];
            tl.sc[t] += (tl.s[t] - (sum - bb)) + (v - bb);
            tl.s[t] = sum;
          } else {
            tl.s[t] += v;
          }
        }
        if constexpr (Park && !std::is_same_v<T, double>) park_values(eb, pcol, ts, g.n);
      }
      if constexpr (P == Prec::full) {
        FOCAL_NATIVE_SIMD
        for (std::int64_t t = 0; t < g.n; ++t) tl.s[t] += tl.sc[t];
        if (any_scaled) {
          for (std::int64_t t = 0; t < g.n; ++t)
            if (scaled[t] >= 0.0) tl.s[t] = scaled[t];
        }
      }
    }
  }

  // Per position: loss and gradient factor.
  static FOCAL_NATIVE_INLINE void finish(const SoftmaxConsts& sc, std::int64_t n,
                                         SoftmaxTile& tl) noexcept {
    if (sc.alpha) {
      for (std::int64_t t = 0; t < n; ++t) {
        const std::int64_t c = tl.c[t];
        tl.a[t] = c >= 0 ? class_alpha(sc, c) : 0.0;
      }
    } else {
      // One weight for every class: a loop that vectorizes.
      FOCAL_NATIVE_SIMD
      for (std::int64_t t = 0; t < n; ++t) tl.a[t] = tl.c[t] >= 0 ? sc.alpha_scale : 0.0;
    }
    // The labelled class's exponential in a loop of its own: in one loop with
    // the rest, its chain of dependent operations (exp, then the logarithm
    // and the divisions that need it) left too few rows in flight. Measured,
    // float32, 10 classes: 3.8 -> 3.2 ns per row.
    alignas(64) double ea[kSoftmaxTile];
    FOCAL_NATIVE_SIMD
    for (std::int64_t t = 0; t < n; ++t) ea[t] = exp_shifted<P, true>(tl.zc[t], tl.m[t]);
    FOCAL_NATIVE_SIMD
    for (std::int64_t t = 0; t < n; ++t) {
      const double d = shifted(tl.zc[t], tl.m[t]);
      const double a = ea[t];
      const double so = tl.s[t];
      const double S = so + a;
      const double inv_s = 1.0 / S;
      const double p = a * inv_s;
      const bool cmax = d == 0.0;
      // log S = log1p(S - 1), one logarithm for both cases: for the arg-max
      // class S - 1 = so exactly in the math (log1p(so) avoids the rounding
      // of the sum); otherwise so includes the maximum's exp(0) = 1, so
      // so >= 1, so - 1 is exact and (so - 1) + a is S - 1 rounded once.
      const double log_s = log1p_nonneg<P>(cmax ? so : (so - 1.0) + a);
      const double log_p = cmax ? -log_s : d - log_s;
      const double q = one_minus_p(p, so, inv_s);
      const FocalTerms ft =
          focal_terms<P, G>(tl.a[t], p, log_p, q, log_one_minus_p<P>(p, so, log_s), sc.gamma);
      const bool live = tl.live[t] != 0;
      // A NaN loss (NaN logits) as the canonical quiet NaN: its sign would
      // otherwise depend on which instructions (vector or scalar, with or
      // without parking) propagated it, and loss-only and fused calls must
      // return the same bits.
      // A NaN logit (m is then NaN) makes the loss and the gradient NaN, also
      // where a zero class weight would otherwise give 0.
      // (Bitwise selects: GCC leaves this loop scalar with plain ones.)
      const double qnan = std::numeric_limits<double>::quiet_NaN();
      const bool nan_row = tl.m[t] != tl.m[t];
      const double loss = select_bits(ft.loss != ft.loss || nan_row, qnan, ft.loss);
      tl.loss[t] = live ? loss : 0.0;
      tl.f[t] = live ? select_bits(nan_row, qnan, ft.f) * tl.scale[t] : 0.0;
      tl.q[t] = q;
      tl.inv_s[t] = inv_s;
      tl.fq[t] = tl.f[t] * q;
      tl.nfs[t] = -tl.f[t] * inv_s;
    }
  }

  // Pass 3 without parked exponentials: exp(z_k - m) recomputed in double
  // from the logits (element k is read before it is written, so the gradient
  // may overwrite the logits). Used for float32 data when a scale above 1
  // could lift an exponential that float parking flushed (below FLT_MIN).
  // Tiles with split scales (tl.big) come here too: the product is formed
  // with the reduced scale and multiplied by post (exact) last.
  static FOCAL_NATIVE_INLINE void grad_recompute(const T* z, T* go, const TileGeom& g,
                                                 std::int64_t C, const SoftmaxTile& tl) noexcept {
    if (tl.big)
      grad_recompute_impl<true>(z, go, g, C, tl);
    else
      grad_recompute_impl<false>(z, go, g, C, tl);
  }
  template <bool Post>
  static FOCAL_NATIVE_INLINE void grad_recompute_impl(const T* z, T* go, const TileGeom& g,
                                                      std::int64_t C,
                                                      const SoftmaxTile& tl) noexcept {
    for (std::int64_t k = 0; k < C; ++k) {
      for (std::int64_t t = 0; t < g.n; ++t) {
        const std::int64_t j = g.at(t, k);
        const double e = exp_shifted<P>(static_cast<double>(z[j]), tl.m[t]);
        double gk = k == tl.c[t] ? tl.fq[t] : tl.nfs[t] * e;
        if constexpr (Post) gk = (gk * tl.post[t]) * tl.post2[t];
        go[j] = static_cast<T>(tl.live[t] != 0 ? gk : 0.0);
      }
    }
  }

  // Pass 3: dFL/dz_k = F (delta_kc - p_k), using q for k == c, from the
  // exponentials parked in the gradient output by the sums pass.
  template <bool Packed = false>
  static FOCAL_NATIVE_INLINE void grad(T* go, const TileGeom& g, std::int64_t C,
                                       const SoftmaxTile& tl) noexcept {
    if (g.rows)
      grad_rows(go, g, C, tl);
    else
      grad_cols<Packed>(go, g, C, tl);
  }

  static FOCAL_NATIVE_INLINE void grad_rows(T* go, const TileGeom& g, std::int64_t C,
                                            const SoftmaxTile& tl) noexcept {
    for (std::int64_t t = 0; t < g.n; ++t) {
      T* grow = go + g.at(t, 0);
      const double fq = tl.fq[t], nfs = tl.nfs[t];
      const std::int64_t c = tl.c[t];
      if (tl.live[t] == 0) {
        for (std::int64_t k = 0; k < C; ++k) grow[k] = T(0);
        continue;
      }
      if constexpr (std::is_same_v<T, float>) {
        // Float arithmetic: -F/S rounded to float times the parked float
        // exponential (about 1 ulp more than in double), then the labelled
        // class on its own.
        const float nfs_f = static_cast<float>(nfs);
        FOCAL_NATIVE_SIMD
        for (std::int64_t k = 0; k < C; ++k) grow[k] = nfs_f * grow[k];
        grow[c] = static_cast<T>(fq);
      } else {
        FOCAL_NATIVE_SIMD
        for (std::int64_t k = 0; k < C; ++k) {
          const double other = nfs * static_cast<double>(grow[k]);
          grow[k] = static_cast<T>(select_bits(k == c, fq, other));
        }
      }
    }
  }

  // Columns mode (g.tstride == 1).
  template <bool Packed>
  static FOCAL_NATIVE_INLINE void grad_cols(T* go, const TileGeom& g, std::int64_t C,
                                            const SoftmaxTile& tl) noexcept {
    constexpr std::int64_t ts = 1;
    if constexpr (std::is_same_v<T, float>) {
      alignas(64) float nfs_f[kSoftmaxTile];
      FOCAL_NATIVE_SIMD
      for (std::int64_t t = 0; t < g.n; ++t) nfs_f[t] = static_cast<float>(tl.nfs[t]);
      if constexpr (Packed) {
        // The classes of a position in an inner loop (see sums_cols), the
        // labelled class selected instead of scattered afterwards.
        alignas(64) float fq_f[kSoftmaxTile];
        alignas(64) std::int32_t c32[kSoftmaxTile];
        FOCAL_NATIVE_SIMD
        for (std::int64_t t = 0; t < g.n; ++t) {
          fq_f[t] = static_cast<float>(tl.fq[t]);
          c32[t] = static_cast<std::int32_t>(tl.c[t]);
        }
        const int nc = static_cast<int>(C);
        FOCAL_NATIVE_SIMD
        for (std::int64_t t = 0; t < g.n; ++t) {
          const float nf = nfs_f[t], fq = fq_f[t];
          const std::int32_t c = c32[t];
          int k = 0;
          do {
            float* gk = go + k * kSoftmaxTile + t;
            *gk = k == c ? fq : nf * *gk;
          } while (++k < nc);
        }
      } else {
      for (std::int64_t k = 0; k < C; ++k) {
        T* gcol = go + g.at(0, k);
        FOCAL_NATIVE_SIMD
        for (std::int64_t t = 0; t < g.n; ++t) gcol[t * ts] = nfs_f[t] * gcol[t * ts];
      }
      // A scatter (distinct positions, distinct addresses). An ignored
      // position (c = -1) writes its class 0, which is zeroed below.
      FOCAL_NATIVE_SIMD
      for (std::int64_t t = 0; t < g.n; ++t) {
        const std::int64_t c = tl.c[t];
        go[g.at(t, c >= 0 ? c : 0)] = static_cast<T>(tl.fq[t]);
      }
      }
    } else {
      for (std::int64_t k = 0; k < C; ++k) {
        T* gcol = go + g.at(0, k);
        FOCAL_NATIVE_SIMD
        for (std::int64_t t = 0; t < g.n; ++t) {
          const double e = static_cast<double>(gcol[t * ts]);
          const double own = tl.fq[t];
          const double other = tl.nfs[t] * e;
          gcol[t * ts] = static_cast<T>(select_bits(k == tl.c[t], own, other));
        }
      }
    }
    // Ignored positions (c = -1) are zeroed here: a select on `live` in the
    // loops above is turned into a conditional store, which does not vectorize.
    if (tl.n_live == g.n) return;
    for (std::int64_t t = 0; t < g.n; ++t) {
      if (tl.live[t] != 0) continue;
      for (std::int64_t k = 0; k < C; ++k) go[g.at(t, k)] = T(0);
    }
  }
};

// ---------------------------------------------------------------------------
// Dense targets (Y == T), or class indices with label smoothing (Y integral).
// FL = -sum_k alpha_k y_k (1 - p_k)^g log p_k,
// dFL/dz_j = y_j F_j (1 - p_j) - p_j sum_{k != j} y_k F_k.

// Dense rows are taken in chunks of this many classes by the per-class loops
// (see DenseKernel::Steps).
inline constexpr std::int64_t kDenseChunk = 256;

template <class T, class Y, GammaKind G, bool StoreLoss, bool WantGrad, bool Up>
struct DenseKernel {
  static constexpr Prec P = prec_for<T>;
  static constexpr bool kDense = std::is_floating_point_v<Y>;

  // The first steps of the per-class terms, each a loop of its own over a
  // chunk of classes (rows) or of positions (columns): p = exp(z - m) / S,
  // and for float64 data log(1 - p). One class's chain (exp, log1p, then
  // pow and the products) is too long for the out-of-order window to
  // overlap enough iterations of one loop (as in the binary kernels, see
  // exp_neg_abs). Measured, one core, 250000 x 80 dense targets, ns/element,
  // forward / fused, same bits: float32 2.64 / 3.64 -> 2.40 / 3.28 (p
  // only; the log1p loop gained nothing there), float64 5.93 / 9.66 -> 4.34
  // / 6.47; label smoothing float32 2.04 / 3.14 -> 1.91 / 2.78.
  // Rows of more than kDenseChunk classes add their per-class terms chunk
  // by chunk (each chunk's vector reduction, then into the row's sum): a
  // different grouping than one reduction over the row, so their last bits
  // differ from the single-loop code of before.
  static constexpr bool kLogStep = P == Prec::full;
  struct Steps {
    alignas(64) double p[kDenseChunk];
    alignas(64) double lq[kLogStep ? kDenseChunk : 1];

    // Classes [0, n) of a row: z[j] with row maximum m and 1/S inv_s.
    // fexp (float32 data, rows that float_exp_ok admits): the exponentials
    // in float, as the row's sum took them (see DenseKernel::sums).
    FOCAL_NATIVE_INLINE void run_row(const T* z, std::int64_t n, double m, double inv_s,
                                     bool fexp) noexcept {
      double* const pb = p;
      if constexpr (std::is_same_v<T, float>) {
        if (fexp) {
          const float mf = static_cast<float>(m);  // the maximum of float data
          FOCAL_NATIVE_SIMD
          for (std::int64_t j = 0; j < n; ++j)
            pb[j] = static_cast<double>(exp_diff_f(z[j], mf)) * inv_s;
          log_step(n);
          return;
        }
      } else {
        (void)fexp;
      }
      FOCAL_NATIVE_SIMD
      for (std::int64_t j = 0; j < n; ++j) pb[j] = prob<true>(static_cast<double>(z[j]), m, inv_s);
      log_step(n);
    }
    // One class of positions [0, n): z[t] with the tile's per-position m and inv_s.
    FOCAL_NATIVE_INLINE void run_col(const T* z, std::int64_t n, const double* m,
                                     const double* inv_s) noexcept {
      double* const pb = p;
      FOCAL_NATIVE_SIMD
      for (std::int64_t t = 0; t < n; ++t)
        pb[t] = prob<true>(static_cast<double>(z[t]), m[t], inv_s[t]);
      log_step(n);
    }
    FOCAL_NATIVE_INLINE void log_step(std::int64_t n) noexcept {
      if constexpr (kLogStep) {
        const double* const pb = p;
        double* const lb = lq;
        FOCAL_NATIVE_SIMD
        for (std::int64_t j = 0; j < n; ++j) lb[j] = log1p_any<P>(-pb[j]);
      } else {
        (void)n;
      }
    }
    // log(1 - p) of element j.
    FOCAL_NATIVE_INLINE double log_q(std::int64_t j) const noexcept {
      if constexpr (kLogStep)
        return lq[j];
      else
        return log1p_any<P>(-p[j]);
    }
  };

  // Target weight y_k of element (t, k).
  static FOCAL_NATIVE_INLINE double target(const Y* y, const TileGeom& g, const SoftmaxConsts& sc,
                                           const SoftmaxTile& tl, std::int64_t t,
                                           std::int64_t k, std::int64_t label) noexcept {
    if constexpr (kDense) {
      (void)sc, (void)tl, (void)label;
      return static_cast<double>(y[g.at(t, k)]);
    } else {
      (void)y, (void)g, (void)t;
      return k == label ? sc.smooth_on : sc.smooth_off;
    }
  }

  // Pass 1 and 2: maximum, arg-max (first maximal class) and the largest
  // logit of the other classes, then the sum of exponentials over the
  // classes other than the arg-max.
  static FOCAL_NATIVE_INLINE void sums(const T* z, const TileGeom& g, std::int64_t C,
                                       SoftmaxTile& tl) noexcept {
    if (g.kstride != 1) return sums_cols(z, g, C, tl);
    for (std::int64_t t = 0; t < g.n; ++t) {
      // Two vectorized passes over the row (in cache): the maximum m (NaN
      // skipped, then flagged); then the first class that attains it, how
      // many do, and the largest logit below m. The largest of the classes
      // other than the arg-max is m when two or more attain it. (Indices and
      // counts in doubles: 64-bit lanes throughout, so the loops vectorize.)
      const T* row = z + g.at(t, 0);
      double m = -std::numeric_limits<double>::infinity();
      double lo = std::numeric_limits<double>::infinity();  // float32 data: the minimum
      std::int64_t nan = 0;
      FOCAL_NATIVE_PRAGMA(omp simd reduction(max : m) reduction(min : lo) reduction(| : nan))
      for (std::int64_t k = 0; k < C; ++k) {
        const double v = static_cast<double>(row[k]);
        nan |= v != v;
        m = v > m ? v : m;
        if constexpr (std::is_same_v<T, float>) lo = v < lo ? v : lo;
      }
      const auto cd = static_cast<double>(C);
      double amd = cd, ties = 0.0, below = -std::numeric_limits<double>::infinity();
      FOCAL_NATIVE_PRAGMA(omp simd reduction(min : amd) reduction(+ : ties) reduction(max : below))
      for (std::int64_t k = 0; k < C; ++k) {
        const double v = static_cast<double>(row[k]);
        const auto kd = static_cast<double>(k);
        const bool eq = v == m;
        amd = eq & (kd < amd) ? kd : amd;  // (bitwise: && branches)
        ties += eq ? 1.0 : 0.0;
        below = (v < m) & (v > below) ? v : below;
      }
      const std::int64_t am = amd < cd ? static_cast<std::int64_t>(amd) : 0;  // (a NaN row: any class)
      const double m2 = ties >= 2.0 ? m : below;
      tl.m[t] = nan != 0 ? std::numeric_limits<double>::quiet_NaN() : m;
      tl.a[t] = static_cast<double>(am);
      tl.sc[t] = m2;  // (the compensation slot is unused by dense rows)
      tl.zc[t] = lo;  // (unused by dense rows otherwise)
    }
    for (std::int64_t t = 0; t < g.n; ++t) {
      const T* row = z + g.at(t, 0);
      const auto am = static_cast<std::int64_t>(tl.a[t]);
      // The arg-max is the class left out (see needs_scaled_sum). (Nothing is
      // written to the gradient before pass 4, so the row is intact anyway.)
      if (P == Prec::full && needs_scaled_sum(tl.m[t], tl.m[t], tl.sc[t]))
        tl.s[t] = sum_exp_scaled(row, g.kstride, C, tl.m[t], tl.sc[t], am);
      else if (float_exp_ok<T>(tl.m[t], tl.zc[t]))
        tl.s[t] = sum_exp_except<P, false, std::is_same_v<T, float>>(row, 1, C, tl.m[t], am);
      else
        tl.s[t] = sum_exp_except<P>(row, g.kstride, C, tl.m[t], am);
    }
  }

  // sums in columns mode (g.tstride == 1): vectorized over the positions of
  // the tile, class by class, with the same results as a row's passes
  // (float64: compensated in class order instead of eight lanes).
  static FOCAL_NATIVE_INLINE void sums_cols(const T* z, const TileGeom& g, std::int64_t C,
                                            SoftmaxTile& tl) noexcept {
    const std::int64_t n = g.n;
    alignas(64) std::int64_t nan[kSoftmaxTile];
    FOCAL_NATIVE_SIMD
    for (std::int64_t t = 0; t < n; ++t) {
      tl.m[t] = tl.sc[t] = -std::numeric_limits<double>::infinity();
      tl.a[t] = 0.0;
      nan[t] = 0;
    }
    for (std::int64_t k = 0; k < C; ++k) {
      const T* col = z + g.at(0, k);
      const auto kd = static_cast<double>(k);
      FOCAL_NATIVE_SIMD
      for (std::int64_t t = 0; t < n; ++t) {
        const double v = static_cast<double>(col[t]);
        const double m = tl.m[t], m2 = tl.sc[t];
        const bool gt = v > m;
        nan[t] |= v != v;
        tl.sc[t] = gt ? m : (v > m2 ? v : m2);
        tl.m[t] = gt ? v : m;
        tl.a[t] = gt ? kd : tl.a[t];
      }
    }
    alignas(64) double scaled[kSoftmaxTile];
    bool any_scaled = false;
    for (std::int64_t t = 0; t < n; ++t) {
      if (nan[t] != 0) tl.m[t] = std::numeric_limits<double>::quiet_NaN();
      scaled[t] = -1.0;
      if (P == Prec::full && needs_scaled_sum(tl.m[t], tl.m[t], tl.sc[t])) {
        scaled[t] = sum_exp_scaled(z + g.at(t, 0), g.kstride, C, tl.m[t], tl.sc[t],
                                   static_cast<std::int64_t>(tl.a[t]));
        any_scaled = true;
      }
    }
    FOCAL_NATIVE_SIMD
    for (std::int64_t t = 0; t < n; ++t) tl.s[t] = tl.zc[t] = 0.0;  // zc: compensation
    for (std::int64_t k = 0; k < C; ++k) {
      const T* col = z + g.at(0, k);
      const auto kd = static_cast<double>(k);
      FOCAL_NATIVE_SIMD
      for (std::int64_t t = 0; t < n; ++t) {
        const double e = exp_shifted<P, true>(static_cast<double>(col[t]), tl.m[t]);
        const double v = loop_select(kd == tl.a[t], 0.0, e);
        if constexpr (P == Prec::full) {
          // Compensated (TwoSum) accumulation, see CompensatedSum.
          const double sum = tl.s[t] + v;
          const double bb = sum - tl.s[t];
          tl.zc[t] += (tl.s[t] - (sum - bb)) + (v - bb);
          tl.s[t] = sum;
        } else {
          tl.s[t] += v;
        }
      }
    }
    if constexpr (P == Prec::full) {
      FOCAL_NATIVE_SIMD
      for (std::int64_t t = 0; t < n; ++t) tl.s[t] += tl.zc[t];
    }
    if (any_scaled) {
      for (std::int64_t t = 0; t < n; ++t)
        if (scaled[t] >= 0.0) tl.s[t] = scaled[t];
    }
  }

  // p = exp(z - m) / S and log p = (z - m) - log S of a class of position t.
  // Loop: the form for `omp simd` loops. (Two functions, not one returning a
  // struct: a struct argument or result becomes an addressable local, which
  // `omp simd` privatizes into a per-lane array, and the loop stays scalar.)
  template <bool Loop>
  static FOCAL_NATIVE_INLINE double prob(double zk, double m, double inv_s) noexcept {
    return exp_shifted<P, Loop>(zk, m) * inv_s;
  }
  template <bool Loop>
  static FOCAL_NATIVE_INLINE double log_prob(double zk, double m, double log_s) noexcept {
    return (Loop ? loop_select(zk == m, 0.0, zk - m) : shifted(zk, m)) - log_s;
  }

  // The terms of a class other than the arg-max, whose p <= 1/2: 1 - p and
  // log1p(-p) need none of the arg-max's care, and no arm is left to branch
  // around, so the per-class loops vectorize. Returns the loss and y F.
  // (Evaluated for the arg-max's lane too, whose p may reach 1: the result
  // may then be NaN, and the loops select it away.)
  // lq = log1p(-p) (see Steps).
  static FOCAL_NATIVE_INLINE FocalTerms other_terms(double alpha, double p, double lq,
                                                    double log_p, double gamma,
                                                    double y) noexcept {
    const double q = 1.0 - p;
    double qg;
    if constexpr (G == GammaKind::general && P == Prec::single)
      qg = exp_nonpos<P, kLoopFlush>(gamma * lq);  // pow_from_log's value, in the loop's form
    else
      qg = pow_from_log<P, G>(q, lq, 0.0, gamma);
    double inner = -1.0;
    if constexpr (G != GammaKind::zero) {
      // q >= 1/2; p log p -> 0 as p -> 0 (log p = -inf).
      const double t = p * (log_p / q);
      inner = mul_add(gamma, loop_select(p == 0.0, 0.0, t), -1.0);
    }
    // The loss as in focal_terms (the order of the products, the zero weights).
    const double L = -log_p;
    const double w = alpha * qg;
    const bool zero = (alpha == 0.0) | (qg == 0.0) | (y == 0.0);
    const double loss = loop_select(alpha > 1.0, w * (y * L), alpha * (y * (qg * L)));
    return {loop_select(zero, 0.0, loss), y * (w * inner)};
  }

  // The arg-max class of position t (the first maximal one), whose p may
  // exceed 1/2: its loss and y F added to the other classes' sums
  // (loss, trest), and its unscaled gradient y F q - p trest stored in
  // tl.fq[t]. (Loss-only calls pass trest = 0: t_all and fq are then not
  // the gradient's, and nothing reads them.)
  static FOCAL_NATIVE_INLINE double argmax_terms(const T* z, const Y* y, const TileGeom& g,
                                                 const SoftmaxConsts& sc,
                                                 const std::int64_t* labels, SoftmaxTile& tl,
                                                 std::int64_t t, double loss,
                                                 double trest) noexcept {
    const auto am = static_cast<std::int64_t>(tl.a[t]);
    const double log_s = tl.f[t], inv_s = tl.inv_s[t], so = tl.s[t];
    const double zk = static_cast<double>(z[g.at(t, am)]);
    const double p = prob<false>(zk, tl.m[t], inv_s);
    const double q = one_minus_p(p, so, inv_s);
    const double yk = target(y, g, sc, tl, t, am, labels ? labels[t] : -1);
    const FocalTerms ft =
        focal_terms<P, G, true>(class_alpha(sc, am), p, log_prob<false>(zk, tl.m[t], log_s), q,
                                log_one_minus_p<P>(p, so, log_s), sc.gamma, yk);
    const double yf = yk * ft.f;
    tl.t_all[t] = trest + yf;
    tl.fq[t] = mul_add(yf, q, -(p * trest));
    // A NaN logit poisons the row even where every target weight is 0.
    const double m = tl.m[t];
    return tl.live[t] != 0 ? (m != m ? m : loss + ft.loss) : 0.0;
  }

  // The gradient of class k of position t, from its per-class terms (p and
  // lq = log1p(-p) from Steps).
  static FOCAL_NATIVE_INLINE double grad_of(double alpha, double p, double lq, double zk,
                                            double yk, double m, double log_s, double tall,
                                            double gam, double gamma, bool is_am) noexcept {
    const double yf = other_terms(alpha, p, lq, log_prob<true>(zk, m, log_s), gamma, yk).f;
    const double gk = mul_add(yf, 1.0 - p, -(p * (tall - yf)));
    return loop_select(is_am, gam, gk);
  }

  // The weight of class k, with (HasAlpha) or without per-class weights: the
  // loops are compiled once for each, since a conditional read of alpha[k]
  // (a masked gather to GCC) leaves them scalar.
  template <bool HasAlpha>
  static FOCAL_NATIVE_INLINE double alpha_at(const SoftmaxConsts& sc, std::int64_t k) noexcept {
    if constexpr (HasAlpha)
      return loop_select(sc.alpha_scale == 1.0, sc.alpha[k], sc.alpha[k] * sc.alpha_scale);
    else
      return sc.alpha_scale;
  }

  // Whether a dense row has at most two nonzero targets; then (only then)
  // lo and hi are set to the first and last nonzero class (-1 each when
  // none; lo == hi for one).
  // (A NaN target counts as nonzero; such a call fails anyway.)
  // In chunks of up to 2^16 classes, stopping once a third nonzero is seen,
  // with 32-bit counts and indices (16 lanes for float32 targets). Measured,
  // one core, 4096 x 80 float32 dense (not sparse) targets in cache,
  // ns/element: forward 2.04 -> 1.73, fused 2.95 -> 2.63 (the 64-bit form
  // of before took 12 % of the forward time).
  static FOCAL_NATIVE_INLINE bool sparse_row(const Y* yrow, std::int64_t C, std::int64_t& lo,
                                             std::int64_t& hi) noexcept {
    constexpr std::int64_t kChunk = std::int64_t{1} << 16;
    std::int64_t nnz = 0, l = -1, h = -1;
    for (std::int64_t k0 = 0; k0 < C; k0 += kChunk) {
      const Y* const yc = yrow + k0;
      const auto n = static_cast<std::int32_t>(C - k0 < kChunk ? C - k0 : kChunk);
      std::int32_t cnt = 0, cl = n, ch = -1;
      FOCAL_NATIVE_PRAGMA(omp simd reduction(+ : cnt) reduction(min : cl) reduction(max : ch))
      for (std::int32_t j = 0; j < n; ++j) {
        const bool nz = yc[j] != Y(0);
        cnt += nz ? 1 : 0;
        cl = nz & (j < cl) ? j : cl;
        ch = nz & (j > ch) ? j : ch;
      }
      nnz += cnt;
      if (nnz > 2) return false;  // lo and hi untouched
      if (cnt > 0) {
        if (l < 0) l = k0 + cl;
        h = k0 + ch;
      }
    }
    lo = l;
    hi = h;
    return true;
  }

  static FOCAL_NATIVE_INLINE void run(const T* z, const Y* y, T* go, const TileGeom& g,
                                      const SoftmaxConsts& sc, const std::int64_t* labels,
                                      SoftmaxTile& tl) noexcept {
    if (sc.alpha)
      run_with<true>(z, y, go, g, sc, labels, tl);
    else
      run_with<false>(z, y, go, g, sc, labels, tl);
  }

  template <bool HasAlpha>
  static FOCAL_NATIVE_INLINE void run_with(const T* z, const Y* y, T* go, const TileGeom& g,
                                           const SoftmaxConsts& sc, const std::int64_t* labels,
                                           SoftmaxTile& tl) noexcept {
    const std::int64_t C = sc.classes;
    const double gamma = sc.gamma;
    sums(z, g, C, tl);
    for (std::int64_t t = 0; t < g.n; ++t) {
      const double sr = tl.s[t];
      tl.f[t] = log1p_nonneg<P>(sr);  // log S
      tl.inv_s[t] = 1.0 / (1.0 + sr);
    }
    // Pass 3: the loss, T_rest = sum of y_k F_k over the classes other than
    // the arg-max, then the arg-max's terms and T = T_rest + its y F.
    // (Loss-only calls leave T_rest at 0: the loss does not depend on it,
    // and its F costs a division per class. Measured, one core, 4096 x 80
    // float32 in cache, forward, ns/element: dense targets 2.18 -> 2.03,
    // label smoothing 1.79 -> 1.66; 250000 x 80 float64 dense 4.26 -> 4.07.)
    // Pass 4 (gradient): the per-class terms again (the gradient may
    // overwrite the logits in place, so nothing is parked in the output);
    // each loop reads z[j] before writing go[j] at the same index only.
    if (g.kstride == 1) {
      // Rows: vectorized over the classes of a position. Dense rows with at
      // most two nonzero targets (one-hot, two-hot) are sparse: only those
      // classes have loss terms, and every other class's gradient is
      // -p_k T, so their terms are evaluated for those classes only (a sum
      // of at most two nonzero terms does not depend on the order; their p
      // come from double exponentials, where float32 rows that
      // float_exp_ok admits take float ones in the full loops and in the
      // sum S: within a float ulp of each other).
      alignas(64) std::int64_t sp_lo[kSoftmaxTile], sp_hi[kSoftmaxTile];
      Steps st;
      for (std::int64_t t = 0; t < g.n; ++t) {
        const double m = tl.m[t], inv_s = tl.inv_s[t], log_s = tl.f[t];
        const std::int64_t label = labels ? labels[t] : -1;
        const std::int64_t am = static_cast<std::int64_t>(tl.a[t]);
        const T* row = z + g.at(t, 0);
        double loss = 0.0, trest = 0.0;
        sp_lo[t] = sp_hi[t] = -2;  // not sparse
        if constexpr (kDense) {
          if (sparse_row(y + g.at(t, 0), C, sp_lo[t], sp_hi[t])) {
            const std::int64_t ks[2] = {sp_lo[t], sp_hi[t]};
            for (int i = 0; i < 2; ++i) {
              const std::int64_t k = ks[i];
              if (k < 0 || k == am || (i == 1 && k == ks[0])) continue;
              const double zk = static_cast<double>(row[k]);
              const double p = prob<true>(zk, m, inv_s);
              const FocalTerms ft = other_terms(alpha_at<HasAlpha>(sc, k), p, log1p_any<P>(-p),
                                                log_prob<true>(zk, m, log_s), gamma,
                                                static_cast<double>(y[g.at(t, k)]));
              loss += ft.loss;
              if constexpr (WantGrad) trest += ft.f;
            }
            tl.loss[t] = argmax_terms(z, y, g, sc, labels, tl, t, loss, trest);
            continue;
          }
        }
        for (std::int64_t k0 = 0; k0 < C; k0 += kDenseChunk) {
          const std::int64_t kn = C - k0 < kDenseChunk ? C - k0 : kDenseChunk;
          const T* const rk = row + k0;
          st.run_row(rk, kn, m, inv_s, float_exp_ok<T>(m, tl.zc[t]));
          FOCAL_NATIVE_PRAGMA(omp simd reduction(+ : loss, trest))
          for (std::int64_t j = 0; j < kn; ++j) {
            const std::int64_t k = k0 + j;
            const FocalTerms ft = other_terms(alpha_at<HasAlpha>(sc, k), st.p[j], st.log_q(j),
                                              log_prob<true>(static_cast<double>(rk[j]), m, log_s),
                                              gamma, target(y, g, sc, tl, t, k, label));
            loss += loop_select(k == am, 0.0, ft.loss);
            if constexpr (WantGrad) trest += loop_select(k == am, 0.0, ft.f);
          }
        }
        tl.loss[t] = argmax_terms(z, y, g, sc, labels, tl, t, loss, trest);
      }
      if constexpr (WantGrad) {
        for (std::int64_t t = 0; t < g.n; ++t) {
          const double m = tl.m[t], inv_s = tl.inv_s[t], log_s = tl.f[t];
          const std::int64_t label = labels ? labels[t] : -1;
          const std::int64_t am = static_cast<std::int64_t>(tl.a[t]);
          const double tall = tl.t_all[t], gam = tl.fq[t], scale = tl.scale[t];
          const double post = tl.big ? tl.post[t] : 1.0;  // see split_big_scales
          const double post2 = tl.big ? tl.post2[t] : 1.0;
          const bool live = tl.live[t] != 0;
          const T* row = z + g.at(t, 0);
          T* grow = go + g.at(t, 0);
          if (kDense && sp_lo[t] >= -1) {
            // The nonzero classes' logits, read before the loop below may
            // overwrite them (in place), then their gradients on top.
            const std::int64_t ks[2] = {sp_lo[t], sp_hi[t]};
            const double zs[2] = {ks[0] >= 0 ? static_cast<double>(row[ks[0]]) : 0.0,
                                  ks[1] >= 0 ? static_cast<double>(row[ks[1]]) : 0.0};
            FOCAL_NATIVE_SIMD
            for (std::int64_t k = 0; k < C; ++k) {
              // grad_of with y_k F_k = -0 (a zero target times F <= 0).
              const double p = prob<true>(static_cast<double>(row[k]), m, inv_s);
              const double gk = mul_add(-0.0, 1.0 - p, -(p * (tall - -0.0)));
              grow[k] = static_cast<T>(
                  select_bits(live, ((loop_select(k == am, gam, gk) * scale) * post) * post2, 0.0));
            }
            for (int i = 0; i < 2; ++i) {
              const std::int64_t k = ks[i];
              if (k < 0 || k == am || (i == 1 && k == ks[0])) continue;
              const double p = prob<true>(zs[i], m, inv_s);
              const double gk = grad_of(alpha_at<HasAlpha>(sc, k), p, log1p_any<P>(-p), zs[i],
                                        static_cast<double>(y[g.at(t, k)]), m, log_s, tall, gam,
                                        gamma, false);
              grow[k] = static_cast<T>(select_bits(live, ((gk * scale) * post) * post2, 0.0));
            }
            continue;
          }
          for (std::int64_t k0 = 0; k0 < C; k0 += kDenseChunk) {
            const std::int64_t kn = C - k0 < kDenseChunk ? C - k0 : kDenseChunk;
            const T* const rk = row + k0;
            T* const gk0 = grow + k0;
            st.run_row(rk, kn, m, inv_s, float_exp_ok<T>(m, tl.zc[t]));
            FOCAL_NATIVE_SIMD
            for (std::int64_t j = 0; j < kn; ++j) {
              const std::int64_t k = k0 + j;
              const double gk = grad_of(alpha_at<HasAlpha>(sc, k), st.p[j], st.log_q(j),
                                        static_cast<double>(rk[j]),
                                        target(y, g, sc, tl, t, k, label), m, log_s, tall, gam,
                                        gamma, k == am);
              gk0[j] = static_cast<T>(select_bits(live, ((gk * scale) * post) * post2, 0.0));
            }
          }
        }
      }
    } else {
      // Columns (class stride > 1, positions contiguous): vectorized over the
      // positions of the tile, class by class; the sums are kept per position
      // in tl.loss and tl.q, in class order as in rows mode.
      const std::int64_t n = g.n;
      static_assert(kSoftmaxTile <= kDenseChunk, "a tile's positions fit one chunk of Steps");
      Steps st;
      for (std::int64_t t = 0; t < n; ++t) tl.loss[t] = tl.q[t] = 0.0;
      for (std::int64_t k = 0; k < C; ++k) {
        const double alpha = alpha_at<HasAlpha>(sc, k);
        const T* col = z + g.at(0, k);
        st.run_col(col, n, tl.m, tl.inv_s);
        FOCAL_NATIVE_SIMD
        for (std::int64_t t = 0; t < n; ++t) {
          const double zk = static_cast<double>(col[t]);
          const double yk = target(y, g, sc, tl, t, k, labels ? labels[t] : -1);
          const FocalTerms ft = other_terms(alpha, st.p[t], st.log_q(t),
                                            log_prob<true>(zk, tl.m[t], tl.f[t]), gamma, yk);
          const bool is_am = static_cast<double>(k) == tl.a[t];
          tl.loss[t] += loop_select(is_am, 0.0, ft.loss);
          if constexpr (WantGrad) tl.q[t] += loop_select(is_am, 0.0, ft.f);
        }
      }
      for (std::int64_t t = 0; t < n; ++t)
        tl.loss[t] = argmax_terms(z, y, g, sc, labels, tl, t, tl.loss[t], tl.q[t]);
      if constexpr (WantGrad) {
        if (!tl.big) {
          for (std::int64_t t = 0; t < n; ++t) tl.post[t] = tl.post2[t] = 1.0;
        }
        for (std::int64_t k = 0; k < C; ++k) {
          const double alpha = alpha_at<HasAlpha>(sc, k);
          const T* col = z + g.at(0, k);
          T* gcol = go + g.at(0, k);
          st.run_col(col, n, tl.m, tl.inv_s);
          FOCAL_NATIVE_SIMD
          for (std::int64_t t = 0; t < n; ++t) {
            const double gk = grad_of(alpha, st.p[t], st.log_q(t), static_cast<double>(col[t]),
                                      target(y, g, sc, tl, t, k, labels ? labels[t] : -1),
                                      tl.m[t], tl.f[t], tl.t_all[t], tl.fq[t], gamma,
                                      static_cast<double>(k) == tl.a[t]);
            gcol[t] = static_cast<T>(select_bits(
                tl.live[t] != 0, ((gk * tl.scale[t]) * tl.post[t]) * tl.post2[t], 0.0));
          }
        }
      }
    }
  }
};

// Gradient scales beyond this (times the largest class factor, amp_bound)
// are split (split_big_scales).
inline constexpr double kBigScale = 0x1p960;

// A position's gradient is (its per-class term) * scale, with scale =
// grad_output / normalizer (/ count). The per-position factors F scale,
// F q scale and F scale / S are formed first, and they (or scale itself) can
// overflow where the gradient, a tiny p_k times them, is finite: a
// normalizer near DBL_MIN. For the positions where |scale| amp_bound >
// kBigScale, scale is replaced by scale 2^-K (the factors then stay below
// about 2^960) and 2^K, as post * post2, is applied to each gradient element
// last: exact steps (the factors are >= 1) unless the result overflows, as
// it should, or is below about 2^(K - 1022), a range these scales leave only
// to products of extremely small probabilities. Rare: everywhere else post
// is not read.
template <bool Up, class T>
FOCAL_NATIVE_INLINE void split_big_scales(SoftmaxTile& tl, std::int64_t n, double gscale,
                                          double amp_bound, const T* up_or_null) noexcept {
  tl.big = true;
  const int ea = amp_bound > 0.0 && amp_bound <= std::numeric_limits<double>::max()
                     ? std::ilogb(amp_bound)
                     : 0;
  const int eg = std::ilogb(gscale);
  for (std::int64_t t = 0; t < n; ++t) {
    tl.post[t] = 1.0;
    tl.post2[t] = 1.0;
    const double s = tl.scale[t];
    if (!(std::fabs(s) * amp_bound > kBigScale)) continue;  // also NaN
    const double u = Up ? static_cast<double>(up_or_null[t]) : 1.0;
    if (!(std::fabs(u) <= std::numeric_limits<double>::max())) continue;  // +-inf: stays so
    const int eu = std::ilogb(u);
    // |u gscale amp_bound| < 2^(eu + eg + ea + 3); K brings it to <= 2^960.
    int K = eu + eg + ea + 3 - 960;
    K = K < 1 ? 1 : (K > 2000 ? 2000 : K);
    // The larger factor takes 2^-K (exact: it stays normal).
    tl.scale[t] = eu >= eg ? scale_down_pow2(u, K) * gscale : u * scale_down_pow2(gscale, K);
    const int k1 = K > 1000 ? 1000 : K;
    tl.post[t] = double_of(static_cast<std::uint64_t>(1023 + k1) << 52);
    tl.post2[t] = double_of(static_cast<std::uint64_t>(1023 + (K - k1)) << 52);
  }
}

inline bool softmax_options_bad(const SoftmaxOptions& o, std::int64_t classes) noexcept {
  if (!(o.gamma >= 0.0) || !(o.gamma <= std::numeric_limits<double>::max())) return true;
  if (!(o.alpha_scale >= 0.0) || !(o.alpha_scale <= std::numeric_limits<double>::max()))
    return true;
  if (!(o.normalizer >= std::numeric_limits<double>::min()) ||
      !(o.normalizer <= std::numeric_limits<double>::max()))
    return true;
  if (!(o.label_smoothing >= 0.0 && o.label_smoothing < 1.0)) return true;
  if (o.alpha) {
    for (std::int64_t k = 0; k < classes; ++k)
      if (!(o.alpha[k] >= 0.0) || !(o.alpha[k] <= std::numeric_limits<double>::max())) return true;
  }
  return false;
}

// One tile of class-index targets (the labels already in tl.c).
template <class T, GammaKind G, bool StoreLoss, bool WantGrad, bool Up>
FOCAL_NATIVE_INLINE void index_tile(const T* z, T* go, const TileGeom& g, const SoftmaxConsts& sc,
                                    bool short_rows, bool park, const TilePrefetch& pf,
                                    SoftmaxTile& tl) noexcept {
  using K = IndexKernel<T, G, StoreLoss, WantGrad, Up>;
  const std::int64_t C = sc.classes, n = g.n;
  if (short_rows) {
    // Class-major copy of a tile of short rows (see index_rows_mode).
    alignas(64) T tbuf[kIndexTransposeClasses<T> * kSoftmaxTile];
    // Short rows: the tile is transposed into a class-major buffer once (and
    // the gradient back), so that every pass runs over contiguous positions
    // instead of strided gathers and scatters.
    // Class k at tbuf + k * kSoftmaxTile, whatever n: a stride known at
    // compile time (see sums_cols).
    rows_to_classes(z + g.base, C, n, tbuf, kSoftmaxTile);
    const TileGeom bg = {0, 1, kSoftmaxTile, n, false};
    if (park)
      K::template sums<true, true>(tbuf, tbuf, bg, C, tl, pf);  // parks over the copy
    else
      K::template sums<false, true>(tbuf, tbuf, bg, C, tl, pf);
    K::finish(sc, n, tl);
    if constexpr (WantGrad) {
      if (park)
        K::template grad<true>(tbuf, bg, C, tl);
      else
        K::grad_recompute(tbuf, tbuf, bg, C, tl);
      classes_to_rows(tbuf, kSoftmaxTile, C, n, go + g.base);
    }
  } else {
    // (Parking the exponentials of NCHW data in the tile buffer instead, so
    // that the gradient output is written once, was measured slower: the
    // stores of the exp pass overlap their cache misses with the arithmetic,
    // a pure store pass cannot.)
    if (park)
      K::template sums<true>(z, go, g, C, tl, pf);
    else
      K::template sums<false>(z, go, g, C, tl, pf);
    K::finish(sc, n, tl);
    if constexpr (WantGrad) {
      if (park)
        K::grad(go, g, C, tl);
      else
        K::grad_recompute(z, go, g, C, tl);
    }
  }
}

// Whether a dense target is outside [0, 1] (or NaN).
template <class Y>
FOCAL_NATIVE_INLINE bool dense_bad(Y v) noexcept {
  const auto d = static_cast<double>(v);
  return !(d >= 0.0 && d <= 1.0);
}

// Class-index targets of any integer type, behind function pointers: the
// kernels are then compiled once for all label types (they dominate the build
// time), and only these three small functions once per type. A tile's labels
// are decoded by one indirect call.
struct LabelSource {
  const void* labels;
  std::int64_t classes;
  std::int64_t ignore;
  // Fills tl.c / out (the label, or -1 when ignored or bad), tl.live and
  // tl.scale (gscale or 0) of positions [pos, pos + n); returns how many
  // count, and ORs whether any label is bad into *bad.
  std::int64_t (*decode)(const LabelSource& src, std::int64_t pos, std::int64_t n, double gscale,
                         SoftmaxTile& tl, std::int64_t* out, bool* bad) noexcept;
  // How many of the first n labels are not ignore_index.
  std::int64_t (*count)(const LabelSource& src, std::int64_t n) noexcept;
  // The lowest bad position in [i0, i1), or -1.
  std::int64_t (*first_bad)(const LabelSource& src, std::int64_t i0, std::int64_t i1) noexcept;
};

template <class Y>
struct LabelOps {
  static FOCAL_NATIVE_INLINE bool bad(Y v, std::int64_t C, std::int64_t ign) noexcept {
    if constexpr (std::is_unsigned_v<Y> && sizeof(Y) == 8)
      if (v > static_cast<Y>(std::numeric_limits<std::int64_t>::max())) return true;
    const auto lv = static_cast<std::int64_t>(v);
    return (lv < 0 || lv >= C) && lv != ign;
  }

  static std::int64_t decode(const LabelSource& src, std::int64_t pos, std::int64_t n,
                             double gscale, SoftmaxTile& tl, std::int64_t* out,
                             bool* anybad) noexcept {
    const Y* y = static_cast<const Y*>(src.labels) + pos;
    const std::int64_t C = src.classes, ign = src.ignore;
    // The bad test as 64-bit flags combined bitwise: GCC leaves this loop
    // scalar with branches or with 32-bit flags among the 64-bit values (the
    // same for setting bools and ORing into one).
    std::int64_t tile_bad = 0, tile_live = 0;
    FOCAL_NATIVE_PRAGMA(omp simd reduction(| : tile_bad) reduction(+ : tile_live))
    for (std::int64_t t = 0; t < n; ++t) {
      const Y v = y[t];
      const auto lv = static_cast<std::int64_t>(v);
      const std::int64_t not_ign = lv != ign;
      std::int64_t bad = ((lv < 0) | (lv >= C)) & not_ign;
      if constexpr (std::is_unsigned_v<Y> && sizeof(Y) == 8)
        bad |= v > static_cast<Y>(std::numeric_limits<std::int64_t>::max());
      const std::int64_t live = (bad == 0) & not_ign;
      tile_bad |= bad;
      tile_live += live;
      const std::int64_t c = live != 0 ? lv : -1;
      tl.c[t] = c;
      out[t] = c;
      tl.live[t] = live;
      tl.scale[t] = live != 0 ? gscale : 0.0;
    }
    *anybad |= tile_bad != 0;
    return tile_live;
  }

  static std::int64_t count(const LabelSource& src, std::int64_t n) noexcept {
    return count_not_ignored(static_cast<const Y*>(src.labels), n, src.ignore);
  }

  static std::int64_t first_bad(const LabelSource& src, std::int64_t i0, std::int64_t i1) noexcept {
    const Y* y = static_cast<const Y*>(src.labels);
    return detail::first_bad(i0, i1, [&](std::int64_t i) { return bad(y[i], src.classes, src.ignore); });
  }
};

template <class Y>
LabelSource label_source(const Y* labels, std::int64_t classes, std::int64_t ignore) noexcept {
  return {labels, classes, ignore, &LabelOps<Y>::decode, &LabelOps<Y>::count,
          &LabelOps<Y>::first_bad};
}

// Y: the dense targets' type (== T), or void for class indices (then `src`
// gives the labels and y_in is null).
template <class T, class Y, GammaKind G, bool StoreLoss, bool WantGrad, bool Up>
Status softmax_run(const T* z_in, const Y* y_in, const LabelSource* src, ClassLayout lay,
                   const SoftmaxOptions& o, T* loss_in, T* grad_in, const T* up_in) noexcept {
  constexpr bool kDense = !std::is_void_v<Y>;
  const std::int64_t C = lay.classes, inner = lay.inner, npos = lay.positions();
  const bool smoothing = !kDense && o.label_smoothing > 0.0;
  SoftmaxConsts sc;
  sc.alpha = o.alpha;
  sc.alpha_scale = o.alpha_scale;
  sc.gamma = o.gamma;
  sc.classes = C;
  sc.smooth_off = C > 0 ? o.label_smoothing / static_cast<double>(C) : 0.0;
  sc.smooth_on = (1.0 - o.label_smoothing) + sc.smooth_off;
  const double inv_norm = 1.0 / o.normalizer;
  double gscale = inv_norm;
  if (WantGrad && o.reduction == Reduction::mean) {
    std::int64_t counted = npos;
    if constexpr (!kDense) counted = src->count(*src, npos);
    if (counted > 0) gscale = inv_norm / static_cast<double>(counted);
  }
  // Largest factor a gradient element can carry besides its scale and p_k.
  double amp_bound = (1.0 + o.gamma) * o.alpha_scale;
  if (o.alpha) {
    double amax = 0.0;
    for (std::int64_t k = 0; k < C; ++k) amax = o.alpha[k] > amax ? o.alpha[k] : amax;
    amp_bound *= amax;
  }
  const std::int64_t min_block = C >= 4096 ? 1 : 4096 / (C > 0 ? C : 1);
  const Blocking bl = make_blocking(npos, min_block);
  const int nthreads = get_num_threads();
  // Threaded, the next block is another thread's: the last tile of a block
  // prefetches nothing past it (see TilePrefetch).
  const bool threaded = runs_threaded(bl.count, lay.elements(), nthreads);
  BlockResults r;
  for_each_block(bl.count, lay.elements(), nthreads, [=, &r](std::int64_t b) {
    FlushDenormalsScope ftz;
    SoftmaxTile tl;
    std::int64_t labels[kSoftmaxTile];
    const T* const z = z_in;
    [[maybe_unused]] const Y* const y = y_in;
    T* const loss_out = loss_in;
    T* const go = grad_in;
    const T* const up = up_in;
    const std::int64_t p0 = b * bl.block;
    const std::int64_t p1 = p0 + bl.block < npos ? p0 + bl.block : npos;
    LaneSum lanes;  // the tile losses, eight interleaved partial sums
    std::int64_t cnt = 0;
    bool anybad = false;
    for (std::int64_t pos = p0; pos < p1;) {
      const TileSpan span = tile_span(pos, p1, C, inner);
      const std::int64_t n = span.n;
      TileGeom g;
      if (inner == 1) {
        // Rows of at least kRowsMinClasses vectorize over classes; shorter
        // rows are transposed into a class-major buffer and vectorize over
        // positions (index_tile; float32 class indices: see
        // index_rows_mode). Dense targets read short rows strided.
        g = {span.base, C, 1, n,
             kDense || smoothing ? C >= kRowsMinClasses : index_rows_mode<T>(C)};
      } else {
        g = {span.base, 1, inner, n, false};
      }
      // Labels / validity of the positions.
      std::int64_t tile_live = 0;
      if constexpr (kDense) {
        // (A flag in doubles: 64-bit lanes throughout, so the loops vectorize.)
        double bad = 0.0;
        if (g.kstride == 1) {
          const Y* yt = y + g.base;  // the tile's targets are contiguous: tstride == C
          FOCAL_NATIVE_PRAGMA(omp simd reduction(max : bad))
          for (std::int64_t j = 0; j < n * C; ++j) bad = dense_bad(yt[j]) ? 1.0 : bad;  // max
        } else {
          for (std::int64_t k = 0; k < C; ++k) {
            const Y* yc = y + g.at(0, k);
            FOCAL_NATIVE_PRAGMA(omp simd reduction(max : bad))
            for (std::int64_t t = 0; t < n; ++t) bad = dense_bad(yc[t]) ? 1.0 : bad;
          }
        }
        anybad |= bad != 0.0;
        for (std::int64_t t = 0; t < n; ++t) {
          tl.c[t] = -1;
          tl.live[t] = 1;
        }
        tile_live = n;
      } else {
        // Labels outside [0, C) that are not ignore_index are bad.
        tile_live = src->decode(*src, pos, n, gscale, tl, labels, &anybad);
      }
      if constexpr (kDense) {
        FOCAL_NATIVE_SIMD
        for (std::int64_t t = 0; t < n; ++t) tl.scale[t] = gscale;  // every position counts
      }
      if constexpr (Up) {
        FOCAL_NATIVE_SIMD
        for (std::int64_t t = 0; t < n; ++t) tl.scale[t] *= static_cast<double>(up[pos + t]);
      }
      cnt += tile_live;
      tl.n_live = tile_live;
      tl.big = false;
      if constexpr (WantGrad) {
        // Every scale is gscale or 0 without an upstream gradient. (An
        // infinite amp_bound, from weights near DBL_MAX, overflows F itself:
        // nothing to split then.)
        bool big = tile_live > 0 && std::fabs(gscale) * amp_bound > kBigScale &&
                   amp_bound <= std::numeric_limits<double>::max();
        if constexpr (Up) {
          int b = 0;
          FOCAL_NATIVE_PRAGMA(omp simd reduction(| : b))
          for (std::int64_t t = 0; t < n; ++t) b |= std::fabs(tl.scale[t]) * amp_bound > kBigScale;
          big = b != 0 && amp_bound <= std::numeric_limits<double>::max();
        }
        if (big) split_big_scales<Up>(tl, n, gscale, amp_bound, Up ? up + pos : up);
      }
      // Parking the exponentials in a float32 gradient output flushes those
      // below FLT_MIN; that is harmless unless a factor above 1 multiplies
      // them: |gradient| <= alpha_max (1 + gamma) * scale * exp(z_k - m).
      // A split scale takes the recomputing gradient pass, which applies post.
      bool park = WantGrad && !tl.big;
      if constexpr (WantGrad && std::is_same_v<T, float>) {
        if constexpr (Up) {
          double smax = 0.0;
          int nan = 0;
          FOCAL_NATIVE_PRAGMA(omp simd reduction(max : smax) reduction(| : nan))
          for (std::int64_t t = 0; t < n; ++t) {
            const double a = std::fabs(tl.scale[t]);
            smax = a > smax ? a : smax;
            nan |= a != a;
          }
          park = park && nan == 0 && smax * amp_bound <= 1.0;
        } else {
          // Every scale is gscale or 0.
          park = park && (tile_live == 0 || std::fabs(gscale) * amp_bound <= 1.0);
        }
      }
      if (kDense || smoothing) {
        // Smoothed labels reach the kernel as the tile's 64-bit labels: one
        // instantiation for every label type.
        if constexpr (kDense)
          DenseKernel<T, Y, G, StoreLoss, WantGrad, Up>::run(z, y, go, g, sc, nullptr, tl);
        else
          DenseKernel<T, std::int64_t, G, StoreLoss, WantGrad, Up>::run(z, nullptr, go, g, sc,
                                                                        labels, tl);
      } else {
        // The next tile (if any) in columns mode: fetched during this one's
        // sums; rows mode reads the rows ahead when streaming (sums_rows).
        TilePrefetch pf;
        pf.streaming = lay.elements() * static_cast<std::int64_t>(sizeof(T)) > kStreamBytes;
        const std::int64_t next = pos + n, pf_end = threaded ? p1 : npos;
        pf.rows_after = pf_end - next;
        if (!g.rows && next < pf_end) {
          // Rows: n rows of C, contiguous (class k's share: n values at k n);
          // otherwise class k's n values at base + k inner.
          const TileSpan nt = tile_span(next, pf_end, C, inner);
          const auto sz = static_cast<std::int64_t>(sizeof(T));
          pf.r = reinterpret_cast<const char*>(z + nt.base);
          pf.w = WantGrad ? reinterpret_cast<const char*>(go + nt.base) : nullptr;
          pf.stride = (inner == 1 ? nt.n : inner) * sz;
          pf.bytes = nt.n * sz;
        }
        index_tile<T, G, StoreLoss, WantGrad, Up>(z, go, g, sc, inner == 1 && !g.rows, park, pf,
                                                  tl);
      }
      lanes.add(tl.loss, n);
      if constexpr (StoreLoss) {
        FOCAL_NATIVE_SIMD
        for (std::int64_t t = 0; t < n; ++t)
          loss_out[pos + t] = static_cast<T>(tl.loss[t] * inv_norm);
      }
      pos += n;
    }
    r.partial[b] = lanes.total();
    r.counted[b] = cnt;
    r.bad[b] = static_cast<unsigned char>(anybad);
  });
  std::int64_t counted = 0;
  for (std::int64_t b = 0; b < bl.count; ++b) {
    if (r.bad[b]) {
      Status st;
      st.code = Status::bad_target;
      const std::int64_t p1 = (b + 1) * bl.block < npos ? (b + 1) * bl.block : npos;
      if constexpr (kDense) {
        // The lowest flat index into the dense targets (with inner > 1 it need
        // not lie in this block of positions): an error path, so just scan.
        st.index = first_bad(0, lay.elements(), [&](std::int64_t j) { return dense_bad(y_in[j]); });
      } else {
        st.index = src->first_bad(*src, b * bl.block, p1);
      }
      return st;
    }
    counted += r.counted[b];
  }
  return finish(r, bl.count, inv_norm, o.reduction, counted);
}

template <class T, class Y>
Status softmax_dispatch(const T* z, const Y* y, ClassLayout lay, const SoftmaxOptions& o,
                        T* loss_out, T* grad_out, const T* up) noexcept {
  static_assert(is_supported_value<T>, "logits must be float or double");
  static_assert(std::is_integral_v<Y> || std::is_same_v<Y, T>,
                "targets must be integer class indices or dense targets of the logits' type");
  if (lay.outer < 0 || lay.classes < 0 || lay.inner < 0 || softmax_options_bad(o, lay.classes)) {
    Status st;
    st.code = Status::bad_argument;
    return st;
  }
  if (lay.classes == 0 && lay.positions() > 0) {
    // Softmax over zero classes is undefined.
    Status st;
    st.code = Status::bad_argument;
    return st;
  }
  const bool none = o.reduction == Reduction::none;
  const bool store_loss = none && loss_out != nullptr;
  const bool want_grad = grad_out != nullptr;
  const bool use_up = want_grad && none && up != nullptr;
  {
    // An output over an input (the gradient in place over the logits): the
    // targets are checked before anything is written (see check_targets_first).
    constexpr bool kDense = std::is_floating_point_v<Y>;
    const std::int64_t ne = lay.elements(), np = lay.positions(), ny = kDense ? ne : np;
    const T* const lo = store_loss ? loss_out : nullptr;
    const T* const u = use_up ? up : nullptr;
    const bool guard = ranges_overlap(lo, np, z, ne) || ranges_overlap(lo, np, y, ny) ||
                       ranges_overlap(lo, np, u, np) || ranges_overlap(grad_out, ne, z, ne) ||
                       ranges_overlap(grad_out, ne, y, ny) || ranges_overlap(grad_out, ne, u, np);
    const std::int64_t last = lay.classes - 1, ign = o.ignore_index;
    const Status st = check_targets_first(guard, ny, [=](std::int64_t i) {
      if constexpr (kDense)
        return target_bad_flag(y[i]);  // outside [0, 1], or NaN
      else
        return label_bad_flag(y[i], last, ign);
    });
    if (!st) return st;
  }
  auto run = [&](auto g_tag) -> Status {
    constexpr GammaKind G = decltype(g_tag)::value;
    auto go = [&](auto sl, auto wg, auto u) -> Status {
      constexpr bool kSL = decltype(sl)::value, kWG = decltype(wg)::value, kUp = decltype(u)::value;
      if constexpr (std::is_floating_point_v<Y>) {
        return softmax_run<T, Y, G, kSL, kWG, kUp>(z, y, nullptr, lay, o, loss_out, grad_out, up);
      } else {
        const LabelSource src = label_source(y, lay.classes, o.ignore_index);
        return softmax_run<T, void, G, kSL, kWG, kUp>(z, nullptr, &src, lay, o, loss_out, grad_out,
                                                      up);
      }
    };
    using F = std::false_type;
    using Tr = std::true_type;
    if (!want_grad) return store_loss ? go(Tr{}, F{}, F{}) : go(F{}, F{}, F{});
    if (store_loss) return go(Tr{}, Tr{}, F{});
    return use_up ? go(F{}, Tr{}, Tr{}) : go(F{}, Tr{}, F{});
  };
  if (o.gamma == 0.0) return run(std::integral_constant<GammaKind, GammaKind::zero>{});
  if constexpr (std::is_same_v<T, float>) {
    if (o.gamma == 2.0) return run(std::integral_constant<GammaKind, GammaKind::square>{});
  }
  return run(std::integral_constant<GammaKind, GammaKind::general>{});
}

}  // namespace detail

// ---------------------------------------------------------------------------
// Public entry points. Logits laid out as (outer, classes, inner). Targets:
//   - Y integral: class indices, outer*inner of them (position o*inner + i);
//     opt.ignore_index ignores a position (no loss, zero gradient, not counted
//     in a mean); opt.label_smoothing eps gives y = (1 - eps) onehot + eps / C;
//     any other label outside [0, C) is reported as Status::bad_target;
//   - Y == T: dense targets in [0, 1] with the logits' layout (Keras'
//     categorical focal loss); a value outside [0, 1] is Status::bad_target
//     with its flat index.
// With Reduction::none, loss_out holds outer*inner values FL / normalizer and
// grad_output (nullable) outer*inner upstream gradients. grad_out (the
// logits' size) may alias logits; a call whose output overlaps an input checks
// its targets before it writes, so one that fails (Status::bad_target) leaves
// every array as it was.

template <class T, class Y>
Status softmax_focal_loss(const T* logits, const Y* targets, ClassLayout layout,
                          const SoftmaxOptions& opt, detail::nondeduced_t<T>* loss_out) noexcept {
  return detail::softmax_dispatch<T, Y>(logits, targets, layout, opt, loss_out, nullptr, nullptr);
}

template <class T, class Y>
Status softmax_focal_loss_grad(const T* logits, const Y* targets, ClassLayout layout,
                               const SoftmaxOptions& opt, detail::nondeduced_t<T>* grad_out,
                               const detail::nondeduced_t<T>* grad_output = nullptr) noexcept {
  return detail::softmax_dispatch<T, Y>(logits, targets, layout, opt, nullptr, grad_out,
                                        grad_output);
}

template <class T, class Y>
Status softmax_focal_loss_with_grad(const T* logits, const Y* targets, ClassLayout layout,
                                    const SoftmaxOptions& opt, detail::nondeduced_t<T>* loss_out,
                                    detail::nondeduced_t<T>* grad_out) noexcept {
  return detail::softmax_dispatch<T, Y>(logits, targets, layout, opt, loss_out, grad_out,
                                        nullptr);
}

FOCAL_NATIVE_END_NAMESPACE
