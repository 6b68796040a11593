// A tiny test harness for the C++ tests: self-registering test functions,
// CHECK macros that count failures instead of aborting, and a table of the
// largest ulp errors reached per kernel, each with its explicit bound.
#pragma once

#include <cmath>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <map>
#include <string>
#include <vector>

namespace fntest {

struct TestCase {
  const char* name;
  void (*fn)();
};

inline std::vector<TestCase>& registry() {
  static std::vector<TestCase> r;
  return r;
}

struct Register {
  Register(const char* name, void (*fn)()) { registry().push_back({name, fn}); }
};

inline long& failures() {
  static long n = 0;
  return n;
}

// Failures printed per test before the rest are only counted.
inline long& printed_in_test() {
  static long n = 0;
  return n;
}

inline void report_failure(const char* file, int line, const std::string& what) {
  ++failures();
  if (++printed_in_test() <= 20) std::printf("  FAIL %s:%d: %s\n", file, line, what.c_str());
}

#if defined(__GNUC__) || defined(__clang__)
inline std::string format(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
#endif
inline std::string format(const char* fmt, ...) {
  char buf[1024];
  va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  return buf;
}

}  // namespace fntest

#define FN_TEST(name)                                                   \
  static void name();                                                   \
  static const ::fntest::Register name##_registered_(#name, &name);     \
  static void name()

#define CHECK(cond)                                                         \
  do {                                                                      \
    if (!(cond)) ::fntest::report_failure(__FILE__, __LINE__, "CHECK(" #cond ")"); \
  } while (0)

// CHECK with a printf-style explanation.
#define CHECK_MSG(cond, ...)                                                  \
  do {                                                                        \
    if (!(cond))                                                              \
      ::fntest::report_failure(__FILE__, __LINE__,                            \
                               std::string("CHECK(" #cond ") ") + ::fntest::format(__VA_ARGS__)); \
  } while (0)

namespace fntest {

using LD = long double;

// Whether the compiler may contract a*b + c into an FMA behind our back
// (GCC's default -ffp-contract=fast once FMA instructions are enabled, e.g.
// -march=native). Then the same formula inlined into two different kernels
// may round differently, and the bitwise comparisons between entry points
// (fused vs loss-only, soft 0/1 vs hard labels) become ulp comparisons.
#if defined(__FMA__) || defined(__FP_FAST_FMA)
inline constexpr bool kMayContract = true;
#else
inline constexpr bool kMayContract = false;
#endif

// The spacing of T's numbers at |x|. Within 16 times T's smallest normal
// number of zero the unit is that threshold itself (the absolute floor the
// Python tests use too): the kernels flush subnormal intermediates to zero,
// and a normalizer < 1 or an upstream gradient > 1 can scale such a flushed
// value back into the normal range.
template <class T>
inline LD ulp_of(LD x) {
  const LD a = std::fabs(x);
  const LD floor = 16 * static_cast<LD>(std::numeric_limits<T>::min());
  if (!(a >= floor)) return floor;
  return std::ldexp(1.0L, std::ilogb(a) - (std::numeric_limits<T>::digits - 1));
}

// |got - ref| in units of the last place of T at ref (or at `scale` when the
// exact value is the small difference of terms of size `scale`). Infinite when
// NaN/infinity patterns differ.
template <class T>
inline LD ulps(T got, LD ref, LD scale = 0) {
  const LD g = static_cast<LD>(got);
  if (std::isnan(ref) || std::isnan(g)) return std::isnan(ref) && std::isnan(g) ? 0 : INFINITY;
  if (std::isinf(ref) || std::isinf(g)) return g == ref ? 0 : INFINITY;
  const LD unit = ulp_of<T>(std::fabs(ref) > scale ? ref : scale);
  return std::fabs(g - ref) / unit;
}

// Largest ulp error seen per key, with its bound; printed at exit.
struct UlpEntry {
  LD max = 0;
  LD bound = 0;
  long count = 0;
  std::string where;
  long known = 0;  // values beyond `bound` but within a known issue's allowance
  LD known_max = 0;
};

// Set by a test that grants a known-issue allowance; main() fails the run if
// none was needed (like pytest's strict xfail): then the allowance is stale.
inline bool& allowance_granted() {
  static bool b = false;
  return b;
}

inline std::map<std::string, UlpEntry>& ulp_table() {
  static std::map<std::string, UlpEntry> t;
  return t;
}

// Records the error of one value under `key`; a value beyond `bound` (plus
// `allowance`, the size of a documented known issue, counted separately) is a
// failure (reported with `where`, built only then).
template <class T, class Where>
inline void record_ulps(const std::string& key, LD bound, T got, LD ref, LD scale, Where&& where,
                        const char* file, int line, LD allowance = 0) {
  const LD u = ulps<T>(got, ref, scale);
  UlpEntry& e = ulp_table()[key];
  e.bound = bound;
  ++e.count;
  if (!(u <= e.max)) {
    e.max = u;
    e.where = where();
  }
  if (u > bound && u <= bound + allowance) {
    ++e.known;
    if (u > e.known_max) e.known_max = u;
    return;
  }
  if (!(u <= bound)) {
    report_failure(file, line,
                   format("%s: %.3Lf ulp > %.1Lf: got %.17g, reference %.21Lg (%s)", key.c_str(),
                          u, bound, static_cast<double>(got), ref, where().c_str()));
  }
}

inline long known_issue_values() {
  long n = 0;
  for (const auto& kv : ulp_table()) n += kv.second.known;
  return n;
}

inline void print_ulp_table() {
  if (ulp_table().empty()) return;
  std::printf("\nmax ulp error vs long double reference (bound), values checked"
              " [beyond the bound within a known issue's allowance]:\n");
  for (const auto& kv : ulp_table()) {
    std::printf("  %-52s %9.3Lf  (<= %5.1Lf)  %8ld", kv.first.c_str(), kv.second.max,
                kv.second.bound, kv.second.count);
    if (kv.second.known) std::printf("  [%ld known]", kv.second.known);
    std::printf("\n");
  }
  std::printf("  where the largest were reached:\n");
  for (const auto& kv : ulp_table())
    if (kv.second.max > 0.75L)
      std::printf("    %-50s %s\n", kv.first.c_str(), kv.second.where.c_str());
}

}  // namespace fntest

// Records got vs ref (long double) under `key`, failing beyond `bound` ulps.
// The trailing arguments are a printf-style description of the value, built
// only when it is needed.
#define CHECK_ULPS(key, bound, got, ref, scale, ...)                                     \
  ::fntest::record_ulps(key, bound, got, ref, scale,                                      \
                        [&] { return ::fntest::format(__VA_ARGS__); }, __FILE__, __LINE__)

// CHECK_ULPS with an extra allowance for a known issue (see allowance_granted).
#define CHECK_ULPS_ALLOW(key, bound, allowance, got, ref, scale, ...)                    \
  ::fntest::record_ulps(key, bound, got, ref, scale,                                      \
                        [&] { return ::fntest::format(__VA_ARGS__); }, __FILE__, __LINE__, \
                        allowance)
