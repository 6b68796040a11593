// Deterministic test inputs: a small PRNG and logit / target generators that
// cover the interesting ranges (near 0, the |z| ~ 1..40 transition, the
// underflow edges ~708..745, and +-1e4).
#pragma once

#include <cmath>
#include <cstdint>
#include <memory>
#include <type_traits>
#include <vector>

namespace fntest {

// splitmix64: tiny, fast, and the same sequence on every platform.
struct Rng {
  std::uint64_t s;
  explicit Rng(std::uint64_t seed) : s(seed) {}
  std::uint64_t next() {
    std::uint64_t z = (s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  double uniform() { return static_cast<double>(next() >> 11) * 0x1p-53; }  // [0, 1)
  double uniform(double a, double b) { return a + (b - a) * uniform(); }
  std::int64_t below(std::int64_t n) { return static_cast<std::int64_t>(next() % static_cast<std::uint64_t>(n)); }
};

// Values every logit set contains somewhere (both signs).
inline const std::vector<double>& special_logits() {
  static const std::vector<double> v = {0.0,    1e-300, 1e-20, 1e-8,  0.5,    1.0,    2.0,
                                        5.0,    10.0,   17.0,  36.75, 40.0,   100.0,  300.0,
                                        700.0,  708.25, 709.5, 745.0, 746.0,  1000.0, 5000.0,
                                        1e4};
  return v;
}

// One logit from a mixture of ranges spanning +-1e4.
inline double random_logit(Rng& r) {
  const double u = r.uniform();
  const double sign = r.uniform() < 0.5 ? -1.0 : 1.0;
  if (u < 0.30) return r.uniform(-40.0, 40.0);
  if (u < 0.50) return r.uniform(-5.0, 5.0);
  if (u < 0.75) return sign * std::pow(10.0, r.uniform(-6.0, 4.0));  // log-uniform up to 1e4
  if (u < 0.85) return r.uniform(-1e4, 1e4);
  const auto& s = special_logits();
  return sign * s[static_cast<std::size_t>(r.below(static_cast<std::int64_t>(s.size())))];
}

template <class T>
inline std::vector<T> random_logits(Rng& r, std::size_t n) {
  std::vector<T> z(n);
  // The special values first (both signs), then the mixture.
  std::size_t i = 0;
  for (double v : special_logits()) {
    if (i + 1 >= n) break;
    z[i++] = static_cast<T>(v);
    z[i++] = static_cast<T>(-v);
  }
  for (; i < n; ++i) z[i] = static_cast<T>(random_logit(r));
  return z;
}

// Soft targets in [0, 1]: exact 0 and 1, 1/2, values near both ends, uniform.
template <class T>
inline T random_soft_target(Rng& r) {
  const double u = r.uniform();
  if (u < 0.15) return T(0);
  if (u < 0.30) return T(1);
  if (u < 0.35) return T(0.5);
  if (u < 0.45) return static_cast<T>(std::pow(10.0, r.uniform(-8.0, -1.0)));
  if (u < 0.55) return static_cast<T>(1.0 - std::pow(10.0, r.uniform(-7.0, -1.0)));
  return static_cast<T>(r.uniform());
}

// The focusing parameters every kernel is checked with: 0 (cross-entropy),
// the integer and half-integer values people use, 2 (float's q*q path), and
// the ends of [0, 5].
inline const std::vector<double>& gammas() {
  static const std::vector<double> g = {0.0, 0.25, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.7, 5.0};
  return g;
}

// std::vector<bool> has no data(): a plain bool array for bool targets.
struct BoolVec {
  std::unique_ptr<bool[]> p;
  std::size_t n = 0;
  explicit BoolVec(std::size_t size) : p(new bool[size]()), n(size) {}
  bool* data() { return p.get(); }
  const bool* data() const { return p.get(); }
  std::size_t size() const { return n; }
  bool& operator[](std::size_t i) { return p[i]; }
  bool operator[](std::size_t i) const { return p[i]; }
};

template <class Y>
using Vec = std::conditional_t<std::is_same_v<Y, bool>, BoolVec, std::vector<Y>>;

// A typed null output: the entry points deduce T from every pointer argument,
// so a bare nullptr does not compile (see docs/cpp.md).
template <class T>
constexpr T* no_output = nullptr;

template <class T>
inline const char* type_name() {
  return sizeof(T) == 4 ? "float" : "double";
}

}  // namespace fntest
