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

#define FOCAL_NATIVE_PRAGMA(x) _Pragma(#x)
// `omp simd` asks the compiler to vectorize a loop. It needs only -fopenmp-simd
// (or -fopenmp); without either flag the pragma is ignored and the loop still
// compiles, serial and scalar.
#if defined(_OPENMP) || defined(__clang__) || defined(__GNUC__)
#define FOCAL_NATIVE_SIMD FOCAL_NATIVE_PRAGMA(omp simd)
#define FOCAL_NATIVE_SIMD_REDUCE(op, var) FOCAL_NATIVE_PRAGMA(omp simd reduction(op : var))
#else
#define FOCAL_NATIVE_SIMD
#define FOCAL_NATIVE_SIMD_REDUCE(op, var)
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
