// The parallel-for over fixed-size blocks, the process-wide thread setting,
// and fork safety.
//
// Work is always split into blocks whose size depends on the problem size
// only, never on the thread count; reductions store one partial per block and
// add them in block order, so results are bitwise identical for any number of
// threads. Small problems (under `kParallelGrain` units of work) never enter an
// OpenMP region. Without OpenMP everything runs serially.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

#if defined(_OPENMP)
#include <omp.h>
#endif
#if defined(__unix__) || defined(__APPLE__)
#include <pthread.h>
#define FOCAL_NATIVE_HAS_PTHREAD_ATFORK 1
#else
#define FOCAL_NATIVE_HAS_PTHREAD_ATFORK 0
#endif

#include "config.hpp"

namespace focal_native {
namespace runtime_state {
// Plain data shared by every instruction-set copy of the kernels (no code
// lives here, so nothing ISA-specific can be merged by the linker).
inline std::atomic<int> requested_threads{0};  // 0: OpenMP's default
inline std::atomic<bool> in_forked_child{false};
inline std::atomic<bool> fork_handler_installed{false};
}  // namespace runtime_state
}  // namespace focal_native

FOCAL_NATIVE_BEGIN_NAMESPACE

// Work below this many element-equivalents runs on the calling thread only: a
// parallel region costs microseconds to open, and far more when another
// process holds a core.
inline constexpr std::int64_t kParallelGrain = 1 << 15;

// Most blocks a reduction is split into; their partial sums live on the stack.
inline constexpr std::int64_t kMaxBlocks = 1024;

namespace detail {
inline void mark_forked_child() noexcept {
  runtime_state::in_forked_child.store(true, std::memory_order_relaxed);
}

// GNU OpenMP's thread pool does not survive fork(): a child that enters a
// parallel region after its parent used one waits forever. Once a process has
// used threads, a fork handler makes its children run serially.
inline void install_fork_handler() noexcept {
#if FOCAL_NATIVE_HAS_PTHREAD_ATFORK && defined(_OPENMP)
  if (!runtime_state::fork_handler_installed.exchange(true)) {
    pthread_atfork(nullptr, nullptr, &mark_forked_child);
  }
#endif
}
}  // namespace detail

// Threads a call may use (>= 1). 1 in a forked child of a process that used
// threads, and always 1 without OpenMP.
inline int get_num_threads() noexcept {
#if defined(_OPENMP)
  if (runtime_state::in_forked_child.load(std::memory_order_relaxed)) return 1;
  const int n = runtime_state::requested_threads.load(std::memory_order_relaxed);
  return n > 0 ? n : omp_get_max_threads();
#else
  return 1;
#endif
}

// Sets the threads every later call uses, process-wide; n <= 0 restores
// OpenMP's default (OMP_NUM_THREADS, else the number of cores).
inline void set_num_threads(int n) noexcept {
  runtime_state::requested_threads.store(n > 0 ? n : 0, std::memory_order_relaxed);
}

// True when the library was compiled with OpenMP.
constexpr bool has_openmp() noexcept {
#if defined(_OPENMP)
  return true;
#else
  return false;
#endif
}

namespace detail {

// How a problem of n items is cut into blocks: the block size depends on n
// alone (at least `min_block`, a multiple of 64, at most kMaxBlocks blocks).
struct Blocking {
  std::int64_t block;
  std::int64_t count;
};

inline Blocking make_blocking(std::int64_t n, std::int64_t min_block) noexcept {
  std::int64_t b = (n + kMaxBlocks - 1) / kMaxBlocks;
  if (b < min_block) b = min_block;
  b = (b + 63) / 64 * 64;
  const std::int64_t count = n > 0 ? (n + b - 1) / b : 0;
  return {b, count};
}

// Whether for_each_block runs its blocks on more than one thread (otherwise
// one after the other, in order).
inline bool runs_threaded(std::int64_t nblocks, std::int64_t total_work, int nthreads) noexcept {
#if defined(_OPENMP)
  return nthreads > 1 && nblocks > 1 && total_work >= kParallelGrain;
#else
  (void)nblocks, (void)total_work, (void)nthreads;
  return false;
#endif
}

// Calls body(block_index) for every block, on up to get_num_threads() threads
// when the total work is large enough. body must not throw.
template <class Body>
inline void for_each_block(std::int64_t nblocks, std::int64_t total_work, int nthreads,
                           Body&& body) noexcept {
#if defined(_OPENMP)
  if (runs_threaded(nblocks, total_work, nthreads)) {
    install_fork_handler();
    const int nt = static_cast<int>(nthreads < nblocks ? nthreads : nblocks);
    // Dynamic: on a loaded machine a thread that gets its core takes more of
    // the blocks instead of waiting for a descheduled one. Which thread runs
    // a block never changes the result (partials are combined in block order).
#pragma omp parallel for schedule(dynamic, 1) num_threads(nt)
    for (std::int64_t b = 0; b < nblocks; ++b) body(b);
    return;
  }
#else
  (void)total_work;
  (void)nthreads;
#endif
  for (std::int64_t b = 0; b < nblocks; ++b) body(b);
}

// The lowest i in [0, n) with flag(i) != 0, or -1. flag returns an unsigned
// integer (0 or 1) and must be branch-free so that a chunk of 256 items is
// tested by one vectorized OR; only a flagged chunk is searched item by item.
// Blocks run in parallel; the answer does not depend on the thread count.
template <class Flag>
inline std::int64_t find_first_flagged(std::int64_t n, Flag flag) noexcept {
  constexpr std::int64_t kChunk = 256;
  const Blocking bl = make_blocking(n, 1 << 14);
  std::int64_t first[kMaxBlocks];
  for_each_block(bl.count, n, get_num_threads(), [=, &first](std::int64_t b) {
    // A local copy: in the threaded region GCC left the loop scalar while
    // flag's pointers were loads through the closure (10x slower).
    const Flag f = flag;
    const std::int64_t i0 = b * bl.block;
    const std::int64_t i1 = i0 + bl.block < n ? i0 + bl.block : n;
    first[b] = -1;
    for (std::int64_t c0 = i0; c0 < i1; c0 += kChunk) {
      const std::int64_t c1 = c0 + kChunk < i1 ? c0 + kChunk : i1;
      decltype(f(c0)) any = 0;
      FOCAL_NATIVE_PRAGMA(omp simd reduction(| : any))
      for (std::int64_t i = c0; i < c1; ++i) any |= f(i);
      if (any != 0) {
        for (std::int64_t i = c0; i < c1; ++i) {
          if (f(i) != 0) {
            first[b] = i;
            return;
          }
        }
      }
    }
  });
  for (std::int64_t b = 0; b < bl.count; ++b)
    if (first[b] >= 0) return first[b];
  return -1;
}

// Whether the byte ranges of [a, a + na) and [b, b + nb) intersect (either
// pointer may be null).
template <class A, class B>
inline bool ranges_overlap(const A* a, std::int64_t na, const B* b, std::int64_t nb) noexcept {
  if (a == nullptr || b == nullptr || na <= 0 || nb <= 0) return false;
  const auto a0 = reinterpret_cast<std::uintptr_t>(a);
  const auto b0 = reinterpret_cast<std::uintptr_t>(b);
  return a0 < b0 + static_cast<std::uintptr_t>(nb) * sizeof(B) &&
         b0 < a0 + static_cast<std::uintptr_t>(na) * sizeof(A);
}

}  // namespace detail
FOCAL_NATIVE_END_NAMESPACE
