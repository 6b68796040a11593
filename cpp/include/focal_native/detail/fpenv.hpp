// Scoped flush-to-zero for the calling thread.
//
// Polynomial steps on the easy examples (|z| > ~10) produce tiny intermediate
// values; without FTZ each subnormal result costs a microcode assist (2-4x in
// float32). The guard sets FTZ for the current thread only and restores the
// caller's exact state on exit, so nothing leaks into the caller.
// Denormals-are-zero is deliberately left off: it would make the kernels read
// subnormal inputs (a target of 1e-310, a negative subnormal target that must
// be rejected) as zero.
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
    constexpr unsigned ftz = 0x8000u;
    if ((saved_ & ftz) != ftz) _mm_setcsr(saved_ | ftz);
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
