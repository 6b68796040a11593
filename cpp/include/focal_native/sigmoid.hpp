// Binary (sigmoid) focal loss kernels: loss, gradient, and both in one pass,
// for elementwise targets (hard 0/1 labels or soft targets in [0, 1]) and for
// class-index targets (multi-label detection: one logit per class, one label
// per position).
//
// All entry points take raw pointers and sizes, never allocate, never throw,
// and report bad targets through the returned Status.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <limits>
#include <type_traits>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#include "common.hpp"
#include "detail/config.hpp"
#include "detail/fpenv.hpp"
#include "detail/math.hpp"
#include "detail/parallel.hpp"
#include "detail/sigmoid_elem.hpp"
#include "detail/sigmoid_f32.hpp"

FOCAL_NATIVE_BEGIN_NAMESPACE
namespace detail {

// Precision the per-element math needs for output type T.
template <class T>
inline constexpr Prec prec_for = std::is_same_v<T, float> ? Prec::single : Prec::full;

template <class T>
inline constexpr bool is_supported_value = std::is_same_v<T, float> || std::is_same_v<T, double>;

// Whether a hard (integer) binary target is outside {0, 1}. (bool targets
// reach the kernels as unsigned char; see sigmoid_dispatch.)
template <class Y>
FOCAL_NATIVE_INLINE bool hard_target_bad(Y y) noexcept {
  if constexpr (std::is_signed_v<Y>) {
    return y < 0 || y > 1;
  } else {
    return y > 1;
  }
}

inline bool sigmoid_options_bad(const SigmoidOptions& o) noexcept {
  return !(o.gamma >= 0.0) || !(o.gamma <= std::numeric_limits<double>::max()) ||
         !(o.alpha <= 1.0) || !(o.normalizer >= std::numeric_limits<double>::min()) ||
         !(o.normalizer <= std::numeric_limits<double>::max());
}

inline SigmoidConsts sigmoid_consts(const SigmoidOptions& o) noexcept {
  const bool weighted = o.alpha >= 0.0;
  return {weighted ? o.alpha : 1.0, weighted ? 1.0 - o.alpha : 1.0, o.gamma};
}

// Lowest index i in [i0, i1) with bad(i), or -1.
template <class Bad>
inline std::int64_t first_bad(std::int64_t i0, std::int64_t i1, Bad&& bad) noexcept {
  for (std::int64_t i = i0; i < i1; ++i)
    if (bad(i)) return i;
  return -1;
}

// A sum in a fixed order: eight interleaved accumulators (element j goes to
// lane j % 8 of its chunk), combined in a fixed tree. The order depends on
// nothing but the element count: not on the instruction set's vector width,
// the compiler's vectorization choices or the target dtype.
struct LaneSum {
  double lane[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  FOCAL_NATIVE_INLINE void add(const double* v, std::int64_t m) noexcept {
    std::int64_t j = 0;
    for (; j + 8 <= m; j += 8)
      for (int l = 0; l < 8; ++l) lane[l] += v[j + l];
    for (int l = 0; j < m; ++j, ++l) lane[l] += v[j];
  }
  FOCAL_NATIVE_INLINE double total() const noexcept {
    return ((lane[0] + lane[1]) + (lane[2] + lane[3])) + ((lane[4] + lane[5]) + (lane[6] + lane[7]));
  }
};

// Adds per-block partial sums in block order and finds the first bad block.
struct BlockResults {
  double partial[kMaxBlocks];
  std::int64_t counted[kMaxBlocks];
  unsigned char bad[kMaxBlocks];
};

// Finishes a Status from block results: total, count, reduction.
inline Status finish(const BlockResults& r, std::int64_t nblocks, const double inv_norm,
                     Reduction red, std::int64_t count) noexcept {
  Status st;
  double total = 0.0;
  for (std::int64_t b = 0; b < nblocks; ++b) total += r.partial[b];
  st.count = count;
  if (red == Reduction::mean)
    st.loss = count > 0 ? total * inv_norm / static_cast<double>(count)
                        : std::numeric_limits<double>::quiet_NaN();
  else if (red == Reduction::sum)
    st.loss = total * inv_norm;
  return st;
}

// Whether an elementwise target is outside its domain ({0, 1} or [0, 1]).
template <class Y>
FOCAL_NATIVE_INLINE bool target_bad(Y y) noexcept {
  if constexpr (std::is_floating_point_v<Y>)
    return !(y >= Y(0) && y <= Y(1));
  else
    return hard_target_bad(y);
}

// The same tests as unsigned flags of the value's own width, branch-free, for
// find_first_flagged's vectorized scan (an in-place call's check before it
// writes; see check_targets_first).
template <std::size_t N>
using uint_of_size_t = std::conditional_t<
    N == 1, std::uint8_t,
    std::conditional_t<N == 2, std::uint16_t, std::conditional_t<N == 4, std::uint32_t, std::uint64_t>>>;

template <class Y>
FOCAL_NATIVE_INLINE uint_of_size_t<sizeof(Y)> target_bad_flag(Y y) noexcept {
  using U = uint_of_size_t<sizeof(Y)>;
  if constexpr (std::is_floating_point_v<Y>)
    return static_cast<U>(!((y >= Y(0)) & (y <= Y(1))));
  else if constexpr (std::is_signed_v<Y>)
    return static_cast<U>((y < 0) | (y > 1));
  else
    return static_cast<U>(y > 1);
}

// A class-index label outside [0, hi] that is not `ignore`, as a 64-bit flag.
template <class L>
FOCAL_NATIVE_INLINE std::uint64_t label_bad_flag(L lab, std::int64_t hi,
                                                 std::int64_t ignore) noexcept {
  const auto v = static_cast<std::int64_t>(lab);
  std::uint64_t bad = static_cast<std::uint64_t>((v < 0) | (v > hi)) & (v != ignore);
  if constexpr (std::is_unsigned_v<L> && sizeof(L) == 8)
    bad |= static_cast<std::uint64_t>(lab > static_cast<L>(std::numeric_limits<std::int64_t>::max()));
  return bad;
}

// Kernels find bad targets in the pass that writes their outputs, at no
// extra cost. When an output overlaps an input (the gradient written in place
// over the logits), that would leave a failed call's input overwritten; then
// (`overlap`) the targets are checked first, in a pass of their own, and a
// bad one is reported before anything is written. flag(i): target i's bad flag.
template <class Flag>
inline Status check_targets_first(bool overlap, std::int64_t ntargets, Flag flag) noexcept {
  Status st;
  if (overlap) {
    st.index = find_first_flagged(ntargets, flag);
    if (st.index >= 0) st.code = Status::bad_target;
  }
  return st;
}

inline constexpr std::int64_t kElemChunk = 256;

// Whether a target, read as a double, is outside its domain: a hard label of
// an unsigned view must be 0 or 1, a float target must be in [0, 1].
template <class Y>
FOCAL_NATIVE_INLINE bool elementwise_target_bad(double y) noexcept {
  if constexpr (std::is_floating_point_v<Y>)
    return !(y >= 0.0 && y <= 1.0);
  else
    return y != 0.0 && y != 1.0;
}

// Whether the float-arithmetic path (detail/sigmoid_f32.hpp) may run a call:
// float32 data, hard labels, gamma 0 or 2 (compile-time), and no scale that
// could lift a float intermediate flushed below FLT_MIN back into the normal
// range: output scales <= 1, no upstream gradient, and alphas that are 0 or
// far from float32's subnormal range.
//
// With soft (float) targets only the elements whose target is exactly 0 or 1
// take it, so that they keep the bits of the same call with hard labels.
template <class T, GammaKind G, bool Up>
inline bool use_float_path(const SigmoidConsts& c, double inv_norm, double gscale) noexcept {
  if constexpr (std::is_same_v<T, float> && G != GammaKind::general && !Up) {
    // The gradient weights alpha * gscale (WeightsF) must be 0 or normal floats.
    auto alpha_ok = [gscale](double a) {
      return a == 0.0 || (a >= 0x1p-60 && a <= 1.0 && a * gscale >= 0x1p-126);
    };
    return inv_norm <= 1.0 && gscale <= 1.0 && alpha_ok(c.alpha_pos) && alpha_ok(c.alpha_neg);
  } else {
    (void)c, (void)inv_norm, (void)gscale;
    return false;
  }
}

// Adds float per-element values to a LaneSum in the same fixed order.
// AVX-512: the eight lanes are one register, each step one widening of eight
// floats and one addition. (GCC 12 split the portable loop into two halves
// of four lanes: about ten instructions per eight values instead of two.)
// Same sums, same bits. Measured, one core, 10M float32 hard labels, gamma 2,
// ns/element forward / fused: 0.503 / 0.586 -> 0.483 / 0.561; class indices
// 125000 x 80: 0.549 / 0.643 -> 0.506 / 0.608.
FOCAL_NATIVE_INLINE void lane_add_f(LaneSum& s, const float* v, std::int64_t m) noexcept {
  std::int64_t j = 0;
#if defined(__AVX512F__)
  // (maskz with a full mask: GCC 12's _mm512_cvtps_pd starts from an
  // undefined register and trips -Wmaybe-uninitialized.)
  constexpr __mmask8 all = 0xFF;
  __m512d acc = _mm512_loadu_pd(s.lane);
  for (; j + 8 <= m; j += 8)
    acc = _mm512_add_pd(acc, _mm512_maskz_cvtps_pd(all, _mm256_loadu_ps(v + j)));
  _mm512_storeu_pd(s.lane, acc);
#else
  for (; j + 8 <= m; j += 8)
    for (int l = 0; l < 8; ++l) s.lane[l] += static_cast<double>(v[j + l]);
#endif
  for (int l = 0; j < m; ++j, ++l) s.lane[l] += static_cast<double>(v[j]);
}

// The double path's first steps of a chunk (see exp_neg_abs), each a loop of
// its own: e for every gamma, and for general gamma unit_terms(e) too.
// terms(j) gives element j's unit_terms, from the buffers or computed in the
// caller's loop.
template <Prec P, GammaKind G>
struct ChunkSteps {
  static constexpr std::int64_t kT = G == GammaKind::general ? kElemChunk : 1;
  alignas(64) double e[kElemChunk];
  alignas(64) double inv[kT], lhi[kT], llo[kT];

  template <class Z>
  FOCAL_NATIVE_INLINE void run(const Z* z, std::int64_t m) noexcept {
    double* const eb = e;
    FOCAL_NATIVE_SIMD
    for (std::int64_t j = 0; j < m; ++j) eb[j] = exp_neg_abs<P>(static_cast<double>(z[j]));
    if constexpr (G == GammaKind::general) {
      double *const ib = inv, *const hb = lhi, *const lb = llo;
      FOCAL_NATIVE_SIMD
      for (std::int64_t j = 0; j < m; ++j) {
        const UnitTerms t = unit_terms<P>(eb[j]);
        ib[j] = t.inv;
        hb[j] = t.lhi;
        lb[j] = t.llo;
      }
    }
  }
  FOCAL_NATIVE_INLINE UnitTerms terms(std::int64_t j) const noexcept {
    if constexpr (G == GammaKind::general)
      return {inv[j], lhi[j], llo[j]};
    else
      return unit_terms<P>(e[j]);
  }
};

// One element of the elementwise kernel, ei = exp_neg_abs(zi) and
// ti = unit_terms(ei): the loss and the unscaled derivative.
template <Prec P, GammaKind G, class Y>
FOCAL_NATIVE_INLINE LossGrad elementwise_eval(double zi, double ei, UnitTerms ti, double yi,
                                              const SigmoidConsts& c) noexcept {
  LossGrad r = sigmoid_hard_t<P, G, true>(zi, ei, ti, yi == 1.0, c);
  if constexpr (std::is_floating_point_v<Y>) {
    const LossGrad s = sigmoid_soft_t<P, G, true>(zi, ei, ti, yi, c);
    const bool hard = yi == 0.0 || yi == 1.0;
    r.loss = select_bits(hard, r.loss, s.loss);
    r.dz = select_bits(hard, r.dz, s.dz);
  }
  return r;
}

// Whether every target of a chunk is exactly 0 or 1 (float targets given as
// hard labels, as torchvision's focal loss takes them): such a chunk skips the
// soft-target formula, whose result the per-element select would discard.
template <class Y>
FOCAL_NATIVE_INLINE bool chunk_all_hard(const Y* y, std::int64_t m) noexcept {
  using U = uint_of_size_t<sizeof(Y)>;
  U soft = 0;
  FOCAL_NATIVE_PRAGMA(omp simd reduction(| : soft))
  for (std::int64_t j = 0; j < m; ++j) soft |= static_cast<U>(!((y[j] == Y(0)) | (y[j] == Y(1))));
  return soft == 0;
}

// One chunk [c0, c0 + m) of hard labels on the float path: the losses into lf
// (and the lanes), the gradient (scaled through wf) stored as it is computed.
// Returns nonzero when a target is neither 0 nor 1.
template <GammaKind G, bool StoreLoss, bool WantGrad, class Y>
FOCAL_NATIVE_INLINE std::int32_t hard_chunk_f(const float* z, const Y* y, std::int64_t c0,
                                              std::int64_t m, const WeightsF wf, double inv_norm,
                                              LaneSum& lanes, float* lo, float* go, float* yf,
                                              float* lf) noexcept {
  std::int32_t bad = 0;
  FOCAL_NATIVE_PRAGMA(omp simd reduction(| : bad))
  for (std::int64_t j = 0; j < m; ++j) {
    const float v = static_cast<float>(y[c0 + j]);
    yf[j] = v;
    bad |= (v != 0.0f && v != 1.0f);
  }
  alignas(64) float ef[kElemChunk];
  exp_neg_abs_f_chunk(z + c0, m, ef);
  FOCAL_NATIVE_SIMD
  for (std::int64_t j = 0; j < m; ++j) {
    const LossGradF e = sigmoid_hard_f_e<G, WantGrad>(z[c0 + j], ef[j], yf[j] == 1.0f, wf);
    lf[j] = e.loss;
    if constexpr (WantGrad) go[c0 + j] = e.dz;
  }
  lane_add_f(lanes, lf, m);
  if constexpr (StoreLoss) {
    FOCAL_NATIVE_SIMD
    for (std::int64_t j = 0; j < m; ++j)
      lo[c0 + j] = static_cast<float>(static_cast<double>(lf[j]) * inv_norm);
  }
  return bad;
}

// One chunk of the double path: losses into lb; the gradient stored into
// go[c0 + j] scaled (Direct: float64 data) or, unscaled, into gb. E: the
// target type elementwise_eval is instantiated for (a floating type: hard and
// soft formulas, selected per element; an integer type: hard only).
template <Prec P, GammaKind G, class E, bool Direct, bool WantGrad, bool Up, class T>
FOCAL_NATIVE_INLINE void double_chunk(const T* zz, const double* zb, const double* yb,
                                      std::int64_t c0, std::int64_t m, const SigmoidConsts& c,
                                      double gscale, const T* uu, T* go, double* lb,
                                      double* gb) noexcept {
  ChunkSteps<P, G> st;
  if constexpr (Direct) {
    st.run(zz + c0, m);
    // In place (grad_out == z) is fine: element j is read before it is written.
    FOCAL_NATIVE_SIMD
    for (std::int64_t j = 0; j < m; ++j) {
      const LossGrad e = elementwise_eval<P, G, E>(zz[c0 + j], st.e[j], st.terms(j), yb[j], c);
      lb[j] = e.loss;
      if constexpr (WantGrad) {
        double g = e.dz * gscale;
        if constexpr (Up) g *= uu[c0 + j];
        go[c0 + j] = g;
      }
    }
  } else {
    (void)zz, (void)gscale, (void)uu, (void)go, (void)c0;
    st.run(zb, m);
    FOCAL_NATIVE_SIMD
    for (std::int64_t j = 0; j < m; ++j) {
      const LossGrad e = elementwise_eval<P, G, E>(zb[j], st.e[j], st.terms(j), yb[j], c);
      lb[j] = e.loss;
      gb[j] = e.dz;
    }
  }
}

// Elementwise targets: one pass over logits/targets writing whatever outputs
// are requested. StoreLoss: per-element loss (reduction none); WantGrad: the
// gradient, times grad_scale, times up[i] when Up.
template <class T, class Y, GammaKind G, bool StoreLoss, bool WantGrad, bool Up>
Status sigmoid_elementwise(const T* z, const Y* y, std::int64_t n, const SigmoidOptions& o,
                           T* loss_out, T* grad_out, const T* up) noexcept {
  constexpr Prec P = prec_for<T>;
  const SigmoidConsts c = sigmoid_consts(o);
  const double inv_norm = 1.0 / o.normalizer;
  const double gscale =
      o.reduction == Reduction::mean && n > 0 ? inv_norm / static_cast<double>(n) : inv_norm;
  const Blocking bl = make_blocking(n, 2048);
  BlockResults r;
  const bool fast = use_float_path<T, G, Up>(c, inv_norm, gscale);
  const WeightsF wf = weights_f(c.alpha_pos, c.alpha_neg, gscale);
  // Captures by value: the loop must see plain local pointers, not loads
  // through the closure, or the compiler cannot prove the loop vectorizable.
  for_each_block(bl.count, n, get_num_threads(), [=, &r](std::int64_t b) {
    FlushDenormalsScope ftz;
    const T* const zz = z;
    const Y* const yy = y;
    T* const lo = loss_out;
    T* const go = grad_out;
    const T* const uu = up;
    const std::int64_t i0 = b * bl.block;
    const std::int64_t i1 = i0 + bl.block < n ? i0 + bl.block : n;
    LaneSum lanes;
    std::int64_t anybad = 0;
    if constexpr (std::is_same_v<T, float> && !std::is_floating_point_v<Y> &&
                  G != GammaKind::general && !Up) {
      if (fast) {
        alignas(64) float yf[kElemChunk], lf[kElemChunk];
        for (std::int64_t c0 = i0; c0 < i1; c0 += kElemChunk) {
          const std::int64_t m = i1 - c0 < kElemChunk ? i1 - c0 : kElemChunk;
          anybad |= hard_chunk_f<G, StoreLoss, WantGrad>(zz, yy, c0, m, wf, inv_norm, lanes, lo,
                                                         go, yf, lf);
        }
        r.partial[b] = lanes.total();
        r.bad[b] = static_cast<unsigned char>(anybad != 0);
        return;
      }
    }
    // Chunks staged through double buffers: the compute loop then touches
    // doubles only, so it vectorizes at 8 lanes per 512-bit register instead
    // of the 64 lanes a uint8 target array would impose (and the spills).
    // float64 data needs no staging of the logits, and its gradient is
    // stored as it is computed (kDirect).
    constexpr bool kDirect = std::is_same_v<T, double>;
    constexpr bool kMixed = std::is_same_v<T, float> && std::is_floating_point_v<Y> &&
                            G != GammaKind::general && !Up;
    alignas(64) double zb[kDirect ? 1 : kElemChunk], yb[kElemChunk], lb[kElemChunk],
        gb[kDirect ? 1 : kElemChunk];
    alignas(64) float hyf[kMixed ? kElemChunk : 1], hlf[kMixed ? kElemChunk : 1];
    (void)hyf, (void)hlf;
    for (std::int64_t c0 = i0; c0 < i1; c0 += kElemChunk) {
      const std::int64_t m = i1 - c0 < kElemChunk ? i1 - c0 : kElemChunk;
      // Float targets that are all 0 or 1 in this chunk: hard labels only.
      bool hard_chunk = false;
      if constexpr (std::is_floating_point_v<Y>) hard_chunk = chunk_all_hard(yy + c0, m);
      if constexpr (kMixed) {
        if (fast && hard_chunk) {
          hard_chunk_f<G, StoreLoss, WantGrad>(zz, yy, c0, m, wf, inv_norm, lanes, lo, go, hyf,
                                               hlf);
          continue;
        }
      }
      FOCAL_NATIVE_SIMD
      for (std::int64_t j = 0; j < m; ++j) {
        if constexpr (!kDirect) zb[j] = static_cast<double>(zz[c0 + j]);
        yb[j] = static_cast<double>(yy[c0 + j]);
      }
      const double gmul = kMixed && fast ? 1.0 : gscale;
      if (kMixed && fast) {
        if constexpr (kMixed) {  // not compiled where zb and gb are placeholders
          // The hard-label results in a float loop of their own (a float
          // function inside the double loop left it scalar: 32 ns/element),
          // then the soft ones in double, selected per element.
          alignas(64) float ef[kElemChunk], hl[kElemChunk], hg[kElemChunk];
          exp_neg_abs_f_chunk(zz + c0, m, ef);
          FOCAL_NATIVE_SIMD
          for (std::int64_t j = 0; j < m; ++j) {
            const LossGradF h = sigmoid_hard_f_e<G, true>(zz[c0 + j], ef[j], yy[c0 + j] == Y(1), wf);
            hl[j] = h.loss;
            hg[j] = h.dz;
          }
          ChunkSteps<P, G> st;  // (the fast path's gamma: 0 or 2)
          st.run(zb, m);
          FOCAL_NATIVE_SIMD
          for (std::int64_t j = 0; j < m; ++j) {
            const LossGrad sft = sigmoid_soft_t<P, G, true>(zb[j], st.e[j], st.terms(j), yb[j], c);
            const bool hard = yb[j] == 0.0 || yb[j] == 1.0;
            // Bitwise selects: a converted value in a select's arm keeps GCC
            // from vectorizing (see select_bits).
            lb[j] = select_bits(hard, static_cast<double>(hl[j]), sft.loss);
            // Hard elements come scaled (WeightsF); the store below then scales by 1.
            gb[j] = select_bits(hard, static_cast<double>(hg[j]), sft.dz * gscale);
          }
        }
      } else if (hard_chunk) {
        double_chunk<P, G, unsigned char, kDirect, WantGrad, Up>(zz, zb, yb, c0, m, c, gscale, uu,
                                                                 go, lb, gb);
      } else {
        double_chunk<P, G, Y, kDirect, WantGrad, Up>(zz, zb, yb, c0, m, c, gscale, uu, go, lb,
                                                     gb);
      }
      FOCAL_NATIVE_PRAGMA(omp simd reduction(| : anybad))
      for (std::int64_t j = 0; j < m; ++j)
        anybad |= elementwise_target_bad<Y>(yb[j]);
      lanes.add(lb, m);
      FOCAL_NATIVE_SIMD
      for (std::int64_t j = 0; j < m; ++j) {
        if constexpr (StoreLoss) lo[c0 + j] = static_cast<T>(lb[j] * inv_norm);
        if constexpr (WantGrad && !kDirect) {
          double g = gb[j] * gmul;
          if constexpr (Up) g *= static_cast<double>(uu[c0 + j]);
          go[c0 + j] = static_cast<T>(g);
        }
      }
    }
    r.partial[b] = lanes.total();
    r.bad[b] = static_cast<unsigned char>(anybad != 0);
  });
  for (std::int64_t b = 0; b < bl.count; ++b) {
    if (!r.bad[b]) continue;
    Status st;
    st.code = Status::bad_target;
    const std::int64_t i1 = (b + 1) * bl.block < n ? (b + 1) * bl.block : n;
    st.index = first_bad(b * bl.block, i1, [&](std::int64_t i) { return target_bad(y[i]); });
    return st;
  }
  return finish(r, bl.count, inv_norm, o.reduction, n);
}

// Whether a class-index label is outside [0, C] and not ignore_index.
template <class L>
FOCAL_NATIVE_INLINE bool label_bad(L lab, std::int64_t classes, std::int64_t ignore) noexcept {
  const auto v = static_cast<std::int64_t>(lab);
  if constexpr (std::is_unsigned_v<L> && sizeof(L) == 8) {
    if (lab > static_cast<L>(std::numeric_limits<std::int64_t>::max())) return true;
  }
  return (v < 0 || v > classes) && v != ignore;
}

template <class L>
inline std::int64_t count_not_ignored(const L* lab, std::int64_t n, std::int64_t ignore) noexcept {
  std::int64_t cnt = 0;
  FOCAL_NATIVE_SIMD_REDUCE(+, cnt)
  for (std::int64_t i = 0; i < n; ++i) cnt += static_cast<std::int64_t>(lab[i]) != ignore;
  return cnt;
}

// Class-index targets are evaluated in flat chunks of up to kElemChunk
// elements, as the elementwise kernel does: a chunk's targets are first
// written out as flags, then one vectorized loop computes the chunk. (Loops
// over a row's C classes, or over one class of a run of positions, cost
// their setup and tail per row: float32 rows of 21 classes ran at 4.8
// ns/element at gamma 2 against 1.3 for the same data with bool targets; and
// a float function inside the double reduction of such a loop stayed scalar,
// 13 ns/element.)
//   yb[j]: 1 where element j is its position's class, 0 elsewhere;
//   kb[j]: 0 where its position is ignored (or its label is bad), 1 elsewhere.
// F: float on the float path, double on the double path (a flag of the
// compute loop's own type: no conversion inside it).

// Rows (inner == 1): the chunk [c0, c0 + m) of the flat elements, whose
// positions are rows of C classes. Set per row, not per element.
template <class F, class L>
FOCAL_NATIVE_INLINE void row_flags(const L* lab, std::int64_t C, std::int64_t ign,
                                   std::int64_t c0, std::int64_t m, F* yb, F* kb) noexcept {
  FOCAL_NATIVE_SIMD
  for (std::int64_t j = 0; j < m; ++j) {
    yb[j] = F(0);
    kb[j] = F(1);
  }
  const std::int64_t end = c0 + m;
  for (std::int64_t r = c0 / C, rs = r * C; rs < end; ++r, rs += C) {
    const auto lv = static_cast<std::int64_t>(lab[r]);
    if (lv == ign || label_bad(lab[r], C, ign)) {
      const std::int64_t lo = (rs > c0 ? rs : c0) - c0;
      const std::int64_t hi = (rs + C < end ? rs + C : end) - c0;
      for (std::int64_t j = lo; j < hi; ++j) kb[j] = F(0);
    } else if (lv < C && rs + lv >= c0 && rs + lv < end) {  // lv == C: background
      yb[rs + lv - c0] = F(1);
    }
  }
}

// Positions along inner (inner > 1): m consecutive positions' labels lrow,
// all of class k.
template <class F, class L>
FOCAL_NATIVE_INLINE void inner_flags(const L* lrow, std::int64_t k, std::int64_t C,
                                     std::int64_t ign, std::int64_t m, F* yb,
                                     F* kb) noexcept {
  FOCAL_NATIVE_SIMD
  for (std::int64_t j = 0; j < m; ++j) {
    const auto lv = static_cast<std::int64_t>(lrow[j]);
    const bool ignored = (lv == ign) | (label_bad_flag(lrow[j], C, ign) != 0);
    yb[j] = lv == k ? F(1) : F(0);
    kb[j] = ignored ? F(0) : F(1);
  }
}

// Complete positions' slabs (inner > 1, every i of each o): the chunk
// [c0, c0 + m) of their flat elements, flags set per run of one class.
// Flat chunks keep a small inner (a few pixels per image, say) from making
// every chunk that short.
template <class F, class L>
FOCAL_NATIVE_INLINE void slab_flags(const L* lab, std::int64_t C, std::int64_t inner,
                                    std::int64_t ign, std::int64_t c0, std::int64_t m, F* yb,
                                    F* kb) noexcept {
  const std::int64_t slab = C * inner;
  std::int64_t o = c0 / slab;
  std::int64_t k = (c0 - o * slab) / inner;
  std::int64_t i = c0 - o * slab - k * inner;
  for (std::int64_t j = 0; j < m;) {
    const std::int64_t len = inner - i < m - j ? inner - i : m - j;
    inner_flags(lab + o * inner + i, k, C, ign, len, yb + j, kb + j);
    j += len;
    i = 0;
    if (++k == C) {
      k = 0;
      ++o;
    }
  }
}

// One chunk [c0, c0 + m) on the float path: gradient (scaled through wf)
// stored as computed, losses into lf, then summed and stored.
template <GammaKind G, bool StoreLoss, bool WantGrad>
FOCAL_NATIVE_INLINE void label_chunk_f(const float* z, std::int64_t c0, std::int64_t m,
                                       const float* yf, const float* kf, const WeightsF wf,
                                       double inv_norm, LaneSum& lanes, float* lo, float* go,
                                       float* lf) noexcept {
  alignas(64) float ef[kElemChunk];
  exp_neg_abs_f_chunk(z + c0, m, ef);
  // In place (go == z) is fine: element j is read before it is written.
  FOCAL_NATIVE_SIMD
  for (std::int64_t j = 0; j < m; ++j) {
    const LossGradF e = sigmoid_hard_f_e<G, WantGrad>(z[c0 + j], ef[j], yf[j] != 0.0f, wf);
    const bool keep = kf[j] != 0.0f;
    lf[j] = keep ? e.loss : 0.0f;
    if constexpr (WantGrad) go[c0 + j] = keep ? e.dz : 0.0f;
  }
  lane_add_f(lanes, lf, m);
  if constexpr (StoreLoss) {
    FOCAL_NATIVE_SIMD
    for (std::int64_t j = 0; j < m; ++j)
      lo[c0 + j] = static_cast<float>(static_cast<double>(lf[j]) * inv_norm);
  }
}

// One chunk on the double path: outputs stored as they are computed (a
// separate store loop over buffered results cost 10-30 % here), losses also
// into lb for the sum.
template <Prec P, GammaKind G, bool StoreLoss, bool WantGrad, bool Up, class T>
FOCAL_NATIVE_INLINE void label_chunk_d(const T* z, std::int64_t c0, std::int64_t m,
                                       const double* yb, const double* kb,
                                       const SigmoidConsts& c, double gscale, double inv_norm,
                                       LaneSum& lanes, T* lo, T* go, const T* up,
                                       double* lb) noexcept {
  ChunkSteps<P, G> st;
  st.run(z + c0, m);
  // In place (go == z) is fine: element j is read before it is written.
  FOCAL_NATIVE_SIMD
  for (std::int64_t j = 0; j < m; ++j) {
    const LossGrad h = sigmoid_hard_t<P, G, WantGrad>(static_cast<double>(z[c0 + j]), st.e[j],
                                                      st.terms(j), yb[j] != 0.0, c);
    const bool ignored = kb[j] == 0.0;
    const double loss = select_bits(ignored, 0.0, h.loss);
    lb[j] = loss;
    if constexpr (StoreLoss) lo[c0 + j] = static_cast<T>(loss * inv_norm);
    if constexpr (WantGrad) {
      double g = h.dz * gscale;
      if constexpr (Up) g *= static_cast<double>(up[c0 + j]);
      // Ignored after the upstream factor: an infinite grad_output at an
      // ignored position must not turn its zero into NaN.
      go[c0 + j] = static_cast<T>(select_bits(ignored, 0.0, g));
    }
  }
  lanes.add(lb, m);
}

// One chunk [c0, c0 + m) of either path, its flags in yb and kb.
template <Prec P, GammaKind G, bool StoreLoss, bool WantGrad, bool Up, bool Fast, class T, class F>
FOCAL_NATIVE_INLINE void label_chunk(const T* z, std::int64_t c0, std::int64_t m, const F* yb,
                                     const F* kb, const SigmoidConsts& c, const WeightsF wf,
                                     double gscale, double inv_norm, LaneSum& lanes, T* lo,
                                     T* go, const T* up, float* lf, double* lb) noexcept {
  if constexpr (Fast) {
    static_assert(std::is_same_v<T, float> && std::is_same_v<F, float> && !Up,
                  "the float path: float32 data, no grad_output");
    (void)c, (void)gscale, (void)up, (void)lb;
    label_chunk_f<G, StoreLoss, WantGrad>(z, c0, m, yb, kb, wf, inv_norm, lanes, lo, go, lf);
  } else {
    (void)wf, (void)lf;
    label_chunk_d<P, G, StoreLoss, WantGrad, Up>(z, c0, m, yb, kb, c, gscale, inv_norm, lanes,
                                                 lo, go, up, lb);
  }
}

// Class-index targets: element (o, k, i) is positive iff labels[o*inner + i] == k;
// label == classes means background, label == ignore_index ignores the position.
// gscale: the gradient's scale (see sigmoid_labels). Fast: the float path
// (sigmoid_hard_f_e, whose derivative comes scaled through WeightsF).
template <class T, class L, GammaKind G, bool StoreLoss, bool WantGrad, bool Up, bool Fast>
Status sigmoid_labels_impl(const T* z_in, const L* lab_in, ClassLayout lay,
                           const SigmoidOptions& o, double gscale, T* loss_in, T* grad_in,
                           const T* up_in) noexcept {
  constexpr Prec P = prec_for<T>;
  using F = std::conditional_t<Fast, float, double>;
  const SigmoidConsts c = sigmoid_consts(o);
  const double inv_norm = 1.0 / o.normalizer;
  const std::int64_t C = lay.classes, inner = lay.inner;
  const std::int64_t npos = lay.positions();
  const std::int64_t ign = o.ignore_index;
  const WeightsF wf = weights_f(c.alpha_pos, c.alpha_neg, gscale);
  const std::int64_t min_block = C >= 2048 ? 1 : 2048 / (C > 0 ? C : 1);
  const Blocking bl = make_blocking(npos, min_block);
  BlockResults r;
  for_each_block(bl.count, lay.elements(), get_num_threads(), [=, &r](std::int64_t b) {
    FlushDenormalsScope ftz;
    const T* const z = z_in;
    const L* const lab = lab_in;
    T* const loss_out = loss_in;
    T* const grad_out = grad_in;
    const T* const up = up_in;
    const std::int64_t p0 = b * bl.block;
    const std::int64_t p1 = p0 + bl.block < npos ? p0 + bl.block : npos;
    // The block's labels: any bad one, and the positions not ignored.
    std::uint64_t anybad = 0;
    std::int64_t kept = 0;
    FOCAL_NATIVE_PRAGMA(omp simd reduction(| : anybad) reduction(+ : kept))
    for (std::int64_t p = p0; p < p1; ++p) {
      const std::uint64_t bad = label_bad_flag(lab[p], C, ign);
      anybad |= bad;
      kept += static_cast<std::int64_t>((static_cast<std::int64_t>(lab[p]) != ign) & (bad == 0));
    }
    LaneSum lanes;
    alignas(64) F yb[kElemChunk], kb[kElemChunk];
    alignas(64) float lf[Fast ? kElemChunk : 1];
    alignas(64) double lb[Fast ? 1 : kElemChunk];
    (void)lf, (void)lb;
    if (inner == 1) {
      const std::int64_t e1 = p1 * C;
      for (std::int64_t c0 = p0 * C; c0 < e1; c0 += kElemChunk) {
        const std::int64_t m = e1 - c0 < kElemChunk ? e1 - c0 : kElemChunk;
        row_flags(lab, C, ign, c0, m, yb, kb);
        label_chunk<P, G, StoreLoss, WantGrad, Up, Fast>(z, c0, m, yb, kb, c, wf, gscale, inv_norm,
                                                       lanes, loss_out, grad_out, up, lf, lb);
      }
    } else {
      // Runs of constant o with i in [i0, i1), one class after another;
      // complete o's in flat chunks.
      for (std::int64_t pos = p0; pos < p1;) {
        const std::int64_t o_idx = pos / inner;
        const std::int64_t i0 = pos - o_idx * inner;
        const std::int64_t i1 = (p1 - o_idx * inner) < inner ? p1 - o_idx * inner : inner;
        if (i0 == 0 && i1 == inner) {
          const std::int64_t o_end = p1 / inner;  // complete o's: [o_idx, o_end)
          const std::int64_t e1 = o_end * C * inner;
          for (std::int64_t c0 = o_idx * C * inner; c0 < e1; c0 += kElemChunk) {
            const std::int64_t m = e1 - c0 < kElemChunk ? e1 - c0 : kElemChunk;
            slab_flags(lab, C, inner, ign, c0, m, yb, kb);
            label_chunk<P, G, StoreLoss, WantGrad, Up, Fast>(z, c0, m, yb, kb, c, wf, gscale,
                                                             inv_norm, lanes, loss_out,
                                                             grad_out, up, lf, lb);
          }
          pos = o_end * inner;
          continue;
        }
        const L* const lrow = lab + o_idx * inner;
        for (std::int64_t k = 0; k < C; ++k) {
          const std::int64_t base = (o_idx * C + k) * inner;
          for (std::int64_t s0 = i0; s0 < i1; s0 += kElemChunk) {
            const std::int64_t m = i1 - s0 < kElemChunk ? i1 - s0 : kElemChunk;
            inner_flags(lrow + s0, k, C, ign, m, yb, kb);
            label_chunk<P, G, StoreLoss, WantGrad, Up, Fast>(z, base + s0, m, yb, kb, c, wf, gscale,
                                                           inv_norm, lanes, loss_out, grad_out,
                                                           up, lf, lb);
          }
        }
        pos = o_idx * inner + i1;
      }
    }
    r.partial[b] = lanes.total();
    r.counted[b] = kept * C;
    r.bad[b] = static_cast<unsigned char>(anybad != 0);
  });
  std::int64_t counted = 0;
  for (std::int64_t b = 0; b < bl.count; ++b) {
    if (r.bad[b]) {
      Status st;
      st.code = Status::bad_target;
      const std::int64_t p1 = (b + 1) * bl.block < npos ? (b + 1) * bl.block : npos;
      st.index = first_bad(b * bl.block, p1,
                           [&](std::int64_t i) { return label_bad(lab_in[i], C, ign); });
      return st;
    }
    counted += r.counted[b];
  }
  return finish(r, bl.count, inv_norm, o.reduction, counted);
}

// Class-index targets: the float-arithmetic instantiation where it applies.
template <class T, class L, GammaKind G, bool StoreLoss, bool WantGrad, bool Up>
Status sigmoid_labels(const T* z, const L* lab, ClassLayout lay, const SigmoidOptions& o,
                      T* loss_out, T* grad_out, const T* up) noexcept {
  const double inv_norm = 1.0 / o.normalizer;
  // The gradient of a mean needs the count before the pass: a cheap pass over
  // the labels only (1/C of the logits' traffic).
  double gscale = inv_norm;
  if (WantGrad && o.reduction == Reduction::mean) {
    const std::int64_t counted =
        count_not_ignored(lab, lay.positions(), o.ignore_index) * lay.classes;
    if (counted > 0) gscale = inv_norm / static_cast<double>(counted);
  }
  if constexpr (std::is_same_v<T, float> && G != GammaKind::general && !Up) {
    if (use_float_path<T, G, Up>(sigmoid_consts(o), inv_norm, gscale))
      return sigmoid_labels_impl<T, L, G, StoreLoss, WantGrad, Up, true>(
          z, lab, lay, o, gscale, loss_out, grad_out, up);
  }
  return sigmoid_labels_impl<T, L, G, StoreLoss, WantGrad, Up, false>(z, lab, lay, o, gscale,
                                                                       loss_out, grad_out, up);
}

// Picks the gamma specialisation and output combination at run time.
template <class T, class Y, bool Labels>
Status sigmoid_select(const T* z, const Y* y, ClassLayout lay, const SigmoidOptions& o,
                      T* loss_out, T* grad_out, const T* up) noexcept {
  if (sigmoid_options_bad(o) || lay.outer < 0 || lay.classes < 0 || lay.inner < 0) {
    Status st;
    st.code = Status::bad_argument;
    return st;
  }
  const bool none = o.reduction == Reduction::none;
  const bool store_loss = none && loss_out != nullptr;
  const bool want_grad = grad_out != nullptr;
  const bool use_up = want_grad && none && up != nullptr;
  {
    const std::int64_t ne = lay.elements(), ny = Labels ? lay.positions() : ne;
    bool guard = false;
    for (const T* out : {store_loss ? loss_out : nullptr, grad_out})
      guard = guard || ranges_overlap(out, ne, z, ne) || ranges_overlap(out, ne, y, ny) ||
              ranges_overlap(out, ne, use_up ? up : nullptr, ne);
    const std::int64_t C = lay.classes, ign = o.ignore_index;
    const Status st = check_targets_first(guard, ny, [=](std::int64_t i) {
      if constexpr (Labels)
        return label_bad_flag(y[i], C, ign);
      else
        return target_bad_flag(y[i]);
    });
    if (!st) return st;
  }
  auto run = [&](auto g_tag) -> Status {
    constexpr GammaKind G = decltype(g_tag)::value;
    auto go = [&](auto sl, auto wg, auto u) -> Status {
      constexpr bool SL = decltype(sl)::value, WG = decltype(wg)::value, U = decltype(u)::value;
      if constexpr (Labels)
        return sigmoid_labels<T, Y, G, SL, WG, U>(z, y, lay, o, loss_out, grad_out, up);
      else
        return sigmoid_elementwise<T, Y, G, SL, WG, U>(z, y, lay.elements(), o, loss_out,
                                                      grad_out, up);
    };
    using F = std::false_type;
    using Tr = std::true_type;
    if (!want_grad) return store_loss ? go(Tr{}, F{}, F{}) : go(F{}, F{}, F{});
    if (store_loss) return go(Tr{}, Tr{}, F{});
    return use_up ? go(F{}, Tr{}, Tr{}) : go(F{}, Tr{}, F{});
  };
  if (o.gamma == 0.0) return run(std::integral_constant<GammaKind, GammaKind::zero>{});
  if (o.gamma == 2.0) return run(std::integral_constant<GammaKind, GammaKind::square>{});
  return run(std::integral_constant<GammaKind, GammaKind::general>{});
}

// bool targets are read as their bytes (0 or 1): GCC vectorizes no conversion
// from bool, and the scalar target loop cost a quarter of the float32
// kernel's time (one core: 0.88 -> 0.67 ns/element, loss only). The kernels
// are instantiated for unsigned char only.
template <class T, class Y, bool Labels>
Status sigmoid_dispatch(const T* z, const Y* y, ClassLayout lay, const SigmoidOptions& o,
                        T* loss_out, T* grad_out, const T* up) noexcept {
  if constexpr (std::is_same_v<Y, bool>) {
    static_assert(sizeof(bool) == 1, "bool targets are read as bytes");
    return sigmoid_select<T, unsigned char, Labels>(
        z, reinterpret_cast<const unsigned char*>(y), lay, o, loss_out, grad_out, up);
  } else {
    return sigmoid_select<T, Y, Labels>(z, y, lay, o, loss_out, grad_out, up);
  }
}

}  // namespace detail

// ---------------------------------------------------------------------------
// Public entry points, elementwise targets (n logits, n targets).
// T: float or double. Y: bool or an integer type holding 0/1 (hard labels),
// or float/double in [0, 1] (soft targets; exact 0 and 1 give the hard-label
// result bit for bit). With Reduction::none, loss_out[i] = FL_i / normalizer
// and grad_out[i] = grad_output[i] * dFL_i/dz_i / normalizer (grad_output may
// be nullptr: all ones); with mean/sum the reduced loss is Status::loss and
// grad_out holds the gradient of that scalar. grad_out may alias logits; a
// call whose output overlaps an input checks its targets before it writes, so
// one that fails (Status::bad_target) leaves every array as it was.

// Loss only. loss_out (n values) is written for Reduction::none and may be
// nullptr otherwise.
template <class T, class Y>
Status sigmoid_focal_loss(const T* logits, const Y* targets, std::int64_t n,
                          const SigmoidOptions& opt, detail::nondeduced_t<T>* loss_out) noexcept {
  static_assert(detail::is_supported_value<T>, "logits must be float or double");
  return detail::sigmoid_dispatch<T, Y, false>(logits, targets, {1, 1, n}, opt, loss_out,
                                               nullptr, nullptr);
}

// Gradient of the (reduced) loss with respect to the logits.
template <class T, class Y>
Status sigmoid_focal_loss_grad(const T* logits, const Y* targets, std::int64_t n,
                               const SigmoidOptions& opt, detail::nondeduced_t<T>* grad_out,
                               const detail::nondeduced_t<T>* grad_output = nullptr) noexcept {
  static_assert(detail::is_supported_value<T>, "logits must be float or double");
  return detail::sigmoid_dispatch<T, Y, false>(logits, targets, {1, 1, n}, opt, nullptr,
                                               grad_out, grad_output);
}

// Loss and gradient in one pass over memory.
template <class T, class Y>
Status sigmoid_focal_loss_with_grad(const T* logits, const Y* targets, std::int64_t n,
                                    const SigmoidOptions& opt, detail::nondeduced_t<T>* loss_out,
                                    detail::nondeduced_t<T>* grad_out) noexcept {
  static_assert(detail::is_supported_value<T>, "logits must be float or double");
  return detail::sigmoid_dispatch<T, Y, false>(logits, targets, {1, 1, n}, opt, loss_out,
                                               grad_out, nullptr);
}

// ---------------------------------------------------------------------------
// Class-index targets: logits laid out as (outer, classes, inner), labels as
// (outer, inner) of an integer type. Element (o, k, i) is positive when its
// label equals k; a label equal to `classes` is background (all negative);
// opt.ignore_index ignores the position (no loss, no gradient, not counted in
// a mean, whose count is the number of non-ignored positions times classes).
// Any other label is reported as Status::bad_target with the label's index.

template <class T, class L>
Status sigmoid_focal_loss(const T* logits, const L* labels, ClassLayout layout,
                          const SigmoidOptions& opt, detail::nondeduced_t<T>* loss_out) noexcept {
  static_assert(std::is_integral_v<L>, "class-index labels must be integers");
  return detail::sigmoid_dispatch<T, L, true>(logits, labels, layout, opt, loss_out, nullptr,
                                              nullptr);
}

template <class T, class L>
Status sigmoid_focal_loss_grad(const T* logits, const L* labels, ClassLayout layout,
                               const SigmoidOptions& opt, detail::nondeduced_t<T>* grad_out,
                               const detail::nondeduced_t<T>* grad_output = nullptr) noexcept {
  static_assert(std::is_integral_v<L>, "class-index labels must be integers");
  return detail::sigmoid_dispatch<T, L, true>(logits, labels, layout, opt, nullptr, grad_out,
                                              grad_output);
}

template <class T, class L>
Status sigmoid_focal_loss_with_grad(const T* logits, const L* labels, ClassLayout layout,
                                    const SigmoidOptions& opt, detail::nondeduced_t<T>* loss_out,
                                    detail::nondeduced_t<T>* grad_out) noexcept {
  static_assert(std::is_integral_v<L>, "class-index labels must be integers");
  return detail::sigmoid_dispatch<T, L, true>(logits, labels, layout, opt, loss_out, grad_out,
                                              nullptr);
}

FOCAL_NATIVE_END_NAMESPACE
