// Compiler and platform facts the kernels depend on. No pybind11, no Python.
#pragma once

#include <cstdint>

// Each translation unit that compiles the kernels for a particular instruction
// set defines FOCAL_NATIVE_ISA_NAMESPACE (e.g. isa_avx2) before including the
// headers, so that every instantiated template gets distinct symbols and the
// linker never merges an AVX-512 copy with the baseline one. Consumers leave it
// alone and get `v1`.
#ifndef FOCAL_NATIVE_ISA_NAMESPACE
#define FOCAL_NATIVE_ISA_NAMESPACE v1
#endif

#define FOCAL_NATIVE_BEGIN_NAMESPACE \
  namespace focal_native {           \
  inline namespace FOCAL_NATIVE_ISA_NAMESPACE {
#define FOCAL_NATIVE_END_NAMESPACE \
  }                                \
  }

#if defined(__GNUC__) || defined(__clang__)
#define FOCAL_NATIVE_INLINE inline __attribute__((always_inline))
#define FOCAL_NATIVE_RESTRICT __restrict__
#elif defined(_MSC_VER)
#define FOCAL_NATIVE_INLINE __forceinline
#define FOCAL_NATIVE_RESTRICT __restrict
#else
#define FOCAL_NATIVE_INLINE inline
#define FOCAL_NATIVE_RESTRICT
#endif

// `omp simd` asks the compiler to vectorize a loop (FOCAL_NATIVE_PRAGMA is
// used for `omp simd` only). The pragma is emitted where the compiler
// understands it: with -fopenmp (which defines _OPENMP), or with -fopenmp-simd
// when FOCAL_NATIVE_OPENMP_SIMD is defined too (no predefined macro reveals
// -fopenmp-simd). Otherwise it is left out, so that a consumer compiling with
// -Wall -Werror and no OpenMP flag gets no "ignoring #pragma omp simd"
// (-Wunknown-pragmas); the loops then compile serial, vectorized where the
// compiler manages by itself.
#if defined(_OPENMP) || defined(FOCAL_NATIVE_OPENMP_SIMD)
#define FOCAL_NATIVE_PRAGMA(x) _Pragma(#x)
#define FOCAL_NATIVE_SIMD FOCAL_NATIVE_PRAGMA(omp simd)
#define FOCAL_NATIVE_SIMD_REDUCE(op, var) FOCAL_NATIVE_PRAGMA(omp simd reduction(op : var))
#else
#define FOCAL_NATIVE_PRAGMA(x)
#define FOCAL_NATIVE_SIMD
#define FOCAL_NATIVE_SIMD_REDUCE(op, var)
#endif

// A hint to fetch the cache line holding *p ahead of use (R: to be read,
// W: to be written), through GCC's and Clang's __builtin_prefetch; a no-op
// with other compilers (MSVC's _mm_prefetch is not wired up: untested here).
// A prefetch never faults, but the kernels only pass addresses inside their
// arrays.
#if defined(__GNUC__) || defined(__clang__)
#define FOCAL_NATIVE_PREFETCH_R(p) __builtin_prefetch((p), 0, 3)
#define FOCAL_NATIVE_PREFETCH_W(p) __builtin_prefetch((p), 1, 3)
#else
#define FOCAL_NATIVE_PREFETCH_R(p) ((void)(p))
#define FOCAL_NATIVE_PREFETCH_W(p) ((void)(p))
#endif

// Hardware fused multiply-add. Where the target has it, fma() is one rounding
// and as fast as a multiply; where it has not, the kernels use the separate
// multiply and add for polynomials (a few tenths of an ulp worse) and Dekker's
// exact product where exactness matters (see math.hpp).
#if defined(__FMA__) || defined(__AVX512F__) || defined(__aarch64__) || defined(__ARM_FEATURE_FMA)
#define FOCAL_NATIVE_HAS_FMA 1
#else
#define FOCAL_NATIVE_HAS_FMA 0
#endif
