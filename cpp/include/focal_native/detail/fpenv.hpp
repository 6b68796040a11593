// Scoped flush-to-zero / denormals-are-zero for the calling thread.
//
// Polynomial steps on the easy examples (|z| > ~10) produce tiny intermediate
// values; without FTZ/DAZ each subnormal costs a microcode assist (2-4x in
// float32). The guard sets both bits for the current thread only and restores
// the caller's exact state on exit, so nothing leaks into the caller.
#pragma once

#include "config.hpp"

#if defined(__SSE2__) || defined(_M_X64) || (defined(_M_IX86_FP) && _M_IX86_FP >= 2)
#include <xmmintrin.h>
#define FOCAL_NATIVE_HAS_MXCSR 1
#else
#define FOCAL_NATIVE_HAS_MXCSR 0
#endif

FOCAL_NATIVE_BEGIN_NAMESPACE
namespace detail {

class FlushDenormalsScope {
 public:
#if FOCAL_NATIVE_HAS_MXCSR
  FlushDenormalsScope() noexcept : saved_(_mm_getcsr()) {
    constexpr unsigned ftz = 0x8000u, daz = 0x0040u;
    if ((saved_ & (ftz | daz)) != (ftz | daz)) _mm_setcsr(saved_ | ftz | daz);
  }
  ~FlushDenormalsScope() { _mm_setcsr(saved_); }

 private:
  unsigned saved_;
#else
  FlushDenormalsScope() noexcept = default;
#endif
  FlushDenormalsScope(const FlushDenormalsScope&) = delete;
  FlushDenormalsScope& operator=(const FlushDenormalsScope&) = delete;
};

}  // namespace detail
FOCAL_NATIVE_END_NAMESPACE
