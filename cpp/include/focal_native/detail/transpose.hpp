// Tile transposes for short rows: between a row-major block of n rows of C
// values (row t at src + t * C) and a class-major buffer (class k at
// dst + k * ld, ld >= n). The softmax kernels copy a tile of short rows (see
// index_rows_mode in softmax.hpp) into class-major order so that their loops run over
// contiguous positions, and copy the gradient back.
//
// Element by element, these copies cost about as much as the rest of the
// softmax of a 10-class row: one scalar load and one scalar store per element.
// For float data with AVX-512 (or AVX2) they move 16 (8) rows at a time
// through registers: masked loads of each row's classes (the masked-off lanes
// are never read, so the last row of an array is safe), an in-register
// transpose, and full-width stores of the classes (and the reverse for the
// gradient, with masked stores). Other builds and float64 data copy element
// by element.
#pragma once

#include <cstdint>

#include "config.hpp"

#if defined(__AVX512F__) || defined(__AVX2__)
#include <immintrin.h>
#endif

FOCAL_NATIVE_BEGIN_NAMESPACE
namespace detail {

// dst[k * ld + t] = src[t * C + k] for t < n, k < C; element by element,
// rows [t0, n).
template <class T>
FOCAL_NATIVE_INLINE void rows_to_classes_scalar(const T* src, std::int64_t C, std::int64_t n,
                                                std::int64_t t0, T* dst, std::int64_t ld) noexcept {
  for (std::int64_t t = t0; t < n; ++t)
    for (std::int64_t k = 0; k < C; ++k) dst[k * ld + t] = src[t * C + k];
}

// dst[t * C + k] = src[k * ld + t] for t < n, k < C; element by element,
// rows [t0, n).
template <class T>
FOCAL_NATIVE_INLINE void classes_to_rows_scalar(const T* src, std::int64_t ld, std::int64_t C,
                                                std::int64_t n, std::int64_t t0, T* dst) noexcept {
  for (std::int64_t t = t0; t < n; ++t)
    for (std::int64_t k = 0; k < C; ++k) dst[t * C + k] = src[k * ld + t];
}

#if defined(__AVX512F__)

// GCC 12's own avx512fintrin.h makes -W(maybe-)uninitialized warn inside the
// unpack and shuffle intrinsics (its undefined-vector placeholders; GCC bug
// 105593), which would fail a consumer's -Wall -Werror build. (Popped after
// the block copies below, where the intrinsics are inlined.)
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#define FOCAL_NATIVE_TRANSPOSE_DIAG_POP
#endif

// In-register transpose of a 16 x 16 float block: r[i] lane j <-> r[j] lane i.
FOCAL_NATIVE_INLINE void transpose16(__m512 r[16]) noexcept {
  __m512 t[16];
  for (int i = 0; i < 8; ++i) {
    t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  // u[4i + j], 128-bit lane L: element 4L + j of rows 4i .. 4i + 3.
  __m512 u[16];
  for (int i = 0; i < 4; ++i) {
    const __m512d a = _mm512_castps_pd(t[4 * i]), b = _mm512_castps_pd(t[4 * i + 2]);
    const __m512d c = _mm512_castps_pd(t[4 * i + 1]), d = _mm512_castps_pd(t[4 * i + 3]);
    u[4 * i + 0] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, b));
    u[4 * i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, b));
    u[4 * i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(c, d));
    u[4 * i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(c, d));
  }
  // Gather lane L of u[j], u[4 + j], u[8 + j], u[12 + j] into column 4L + j.
  for (int j = 0; j < 4; ++j) {
    const __m512 v0 = _mm512_shuffle_f32x4(u[j], u[4 + j], 0x88);   // L0 L2 | L0 L2
    const __m512 w0 = _mm512_shuffle_f32x4(u[j], u[4 + j], 0xdd);   // L1 L3 | L1 L3
    const __m512 v1 = _mm512_shuffle_f32x4(u[8 + j], u[12 + j], 0x88);
    const __m512 w1 = _mm512_shuffle_f32x4(u[8 + j], u[12 + j], 0xdd);
    r[j] = _mm512_shuffle_f32x4(v0, v1, 0x88);       // lane 0
    r[8 + j] = _mm512_shuffle_f32x4(v0, v1, 0xdd);   // lane 2
    r[4 + j] = _mm512_shuffle_f32x4(w0, w1, 0x88);   // lane 1
    r[12 + j] = _mm512_shuffle_f32x4(w0, w1, 0xdd);  // lane 3
  }
}

// One register of 16 floats and what the block copies below need of it.
struct FloatRegs {
  static constexpr int W = 16;
  using V = __m512;
  using Mask = __mmask16;
  static FOCAL_NATIVE_INLINE Mask mask(std::int64_t w) noexcept {
    return static_cast<Mask>((1u << w) - 1u);
  }
  static FOCAL_NATIVE_INLINE V load(const float* p, Mask m) noexcept {
    return _mm512_maskz_loadu_ps(m, p);
  }
  static FOCAL_NATIVE_INLINE V load(const float* p) noexcept { return _mm512_loadu_ps(p); }
  static FOCAL_NATIVE_INLINE V zero() noexcept { return _mm512_setzero_ps(); }
  static FOCAL_NATIVE_INLINE void store(float* p, V v) noexcept { _mm512_storeu_ps(p, v); }
  static FOCAL_NATIVE_INLINE void store(float* p, Mask m, V v) noexcept {
    _mm512_mask_storeu_ps(p, m, v);
  }
  static FOCAL_NATIVE_INLINE void transpose(V r[W]) noexcept { transpose16(r); }
};

#elif defined(__AVX2__)

// In-register transpose of an 8 x 8 float block.
FOCAL_NATIVE_INLINE void transpose8(__m256 r[8]) noexcept {
  __m256 t[8], u[8];
  for (int i = 0; i < 4; ++i) {
    t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  // u[4h + j], 128-bit lane L: element 4L + j of rows 4h .. 4h + 3.
  for (int h = 0; h < 2; ++h) {
    u[4 * h + 0] = _mm256_shuffle_ps(t[4 * h], t[4 * h + 2], 0x44);
    u[4 * h + 1] = _mm256_shuffle_ps(t[4 * h], t[4 * h + 2], 0xee);
    u[4 * h + 2] = _mm256_shuffle_ps(t[4 * h + 1], t[4 * h + 3], 0x44);
    u[4 * h + 3] = _mm256_shuffle_ps(t[4 * h + 1], t[4 * h + 3], 0xee);
  }
  for (int j = 0; j < 4; ++j) {
    r[j] = _mm256_permute2f128_ps(u[j], u[4 + j], 0x20);
    r[4 + j] = _mm256_permute2f128_ps(u[j], u[4 + j], 0x31);
  }
}

FOCAL_NATIVE_INLINE __m256i lane_mask8(std::int64_t w) noexcept {
  const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(w)), idx);
}

// One register of 8 floats and what the block copies below need of it.
struct FloatRegs {
  static constexpr int W = 8;
  using V = __m256;
  using Mask = __m256i;
  static FOCAL_NATIVE_INLINE Mask mask(std::int64_t w) noexcept { return lane_mask8(w); }
  static FOCAL_NATIVE_INLINE V load(const float* p, Mask m) noexcept {
    return _mm256_maskload_ps(p, m);
  }
  static FOCAL_NATIVE_INLINE V load(const float* p) noexcept { return _mm256_loadu_ps(p); }
  static FOCAL_NATIVE_INLINE V zero() noexcept { return _mm256_setzero_ps(); }
  static FOCAL_NATIVE_INLINE void store(float* p, V v) noexcept { _mm256_storeu_ps(p, v); }
  static FOCAL_NATIVE_INLINE void store(float* p, Mask m, V v) noexcept {
    _mm256_maskstore_ps(p, m, v);
  }
  static FOCAL_NATIVE_INLINE void transpose(V r[W]) noexcept { transpose8(r); }
};

#endif

#if defined(__AVX512F__) || defined(__AVX2__)

// Blocks of W rows (R::W) and up to W classes through registers: masked loads
// of each row's classes, an in-register transpose, one store per class; the
// leftover rows element by element.
FOCAL_NATIVE_INLINE void rows_to_classes(const float* src, std::int64_t C, std::int64_t n,
                                         float* dst, std::int64_t ld) noexcept {
  using R = FloatRegs;
  const std::int64_t nb = n - n % R::W;
  for (std::int64_t t0 = 0; t0 < nb; t0 += R::W) {
    for (std::int64_t k0 = 0; k0 < C; k0 += R::W) {
      const std::int64_t w = C - k0 < R::W ? C - k0 : R::W;
      const R::Mask m = R::mask(w);
      R::V r[R::W];
      for (int i = 0; i < R::W; ++i) r[i] = R::load(src + (t0 + i) * C + k0, m);
      R::transpose(r);
      for (std::int64_t j = 0; j < w; ++j) R::store(dst + (k0 + j) * ld + t0, r[j]);
    }
  }
  rows_to_classes_scalar(src, C, n, nb, dst, ld);
}

// The reverse: one load per class (zeros for the missing ones), the
// transpose, masked stores of each row's classes.
FOCAL_NATIVE_INLINE void classes_to_rows(const float* src, std::int64_t ld, std::int64_t C,
                                         std::int64_t n, float* dst) noexcept {
  using R = FloatRegs;
  const std::int64_t nb = n - n % R::W;
  for (std::int64_t t0 = 0; t0 < nb; t0 += R::W) {
    for (std::int64_t k0 = 0; k0 < C; k0 += R::W) {
      const std::int64_t w = C - k0 < R::W ? C - k0 : R::W;
      const R::Mask m = R::mask(w);
      R::V r[R::W];
      for (int j = 0; j < R::W; ++j) r[j] = j < w ? R::load(src + (k0 + j) * ld + t0) : R::zero();
      R::transpose(r);
      for (int i = 0; i < R::W; ++i) R::store(dst + (t0 + i) * C + k0, m, r[i]);
    }
  }
  classes_to_rows_scalar(src, ld, C, n, nb, dst);
}

#ifdef FOCAL_NATIVE_TRANSPOSE_DIAG_POP
#pragma GCC diagnostic pop
#undef FOCAL_NATIVE_TRANSPOSE_DIAG_POP
#endif

#else

FOCAL_NATIVE_INLINE void rows_to_classes(const float* src, std::int64_t C, std::int64_t n,
                                         float* dst, std::int64_t ld) noexcept {
  rows_to_classes_scalar(src, C, n, 0, dst, ld);
}

FOCAL_NATIVE_INLINE void classes_to_rows(const float* src, std::int64_t ld, std::int64_t C,
                                         std::int64_t n, float* dst) noexcept {
  classes_to_rows_scalar(src, ld, C, n, 0, dst);
}

#endif

FOCAL_NATIVE_INLINE void rows_to_classes(const double* src, std::int64_t C, std::int64_t n,
                                         double* dst, std::int64_t ld) noexcept {
  rows_to_classes_scalar(src, C, n, 0, dst, ld);
}

FOCAL_NATIVE_INLINE void classes_to_rows(const double* src, std::int64_t ld, std::int64_t C,
                                         std::int64_t n, double* dst) noexcept {
  classes_to_rows_scalar(src, ld, C, n, 0, dst);
}

}  // namespace detail
FOCAL_NATIVE_END_NAMESPACE
