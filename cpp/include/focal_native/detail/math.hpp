// Elementary functions for the kernels: exp of non-positive arguments, log and
// log1p of non-negative ones, and the error-free sum and product they need.
//
// Written as branch-free scalar code over doubles (bit manipulation plus
// polynomials) so that the compiler vectorizes a loop that calls them; they
// never call libm. Every function takes a `Prec` tag:
//   - `full`: results within about one ulp of double precision, for float64 data;
//   - `single`: results within about 2^-34 relative, plenty for float32 data
//     (which the kernels evaluate in double), at roughly half the polynomial cost.
// Polynomial coefficients are Chebyshev fits made for this project (mpmath,
// 60 digits), stored as hexadecimal literals so they round-trip exactly.
#pragma once

#include <cstdint>
#include <cstring>
#include <cmath>
#include <limits>

#include "config.hpp"

FOCAL_NATIVE_BEGIN_NAMESPACE
namespace detail {

enum class Prec { single, full };

FOCAL_NATIVE_INLINE std::uint64_t bits_of(double x) noexcept {
  std::uint64_t u;
  std::memcpy(&u, &x, sizeof u);
  return u;
}

FOCAL_NATIVE_INLINE double double_of(std::uint64_t u) noexcept {
  double x;
  std::memcpy(&x, &u, sizeof x);
  return x;
}

// c ? a : b as a bitwise blend. A plain conditional whose result is then
// converted to another floating type (double -> float store) is turned by GCC
// into a conversion in each arm, which under trapping math it will not
// if-convert: the loop stays scalar. Integer masks never trap.
FOCAL_NATIVE_INLINE double select_bits(bool c, double a, double b) noexcept {
  const std::uint64_t m = std::uint64_t{0} - static_cast<std::uint64_t>(c);
  return double_of((bits_of(a) & m) | (bits_of(b) & ~m));
}

// A select inside an `omp simd` loop, in the form that GCC 12 if-converts
// (and so vectorizes) for the instruction set being compiled: where an arm is
// computed by an operation that may trap (a product, a sum), only the bitwise
// form vectorizes with AVX-512 (compiled with trapping math: see
// CMakeLists.txt); the AVX2 build (-fno-trapping-math) vectorizes either, and
// the scalar baseline runs the conditional faster. Measured, float64 softmax
// rows of 80 classes: AVX-512 5.3 -> 1.8 ns/element with the bitwise form;
// baseline 7.3 -> 20 with it.
FOCAL_NATIVE_INLINE double loop_select(bool c, double a, double b) noexcept {
#if defined(__AVX512F__)
  return select_bits(c, a, b);
#else
  return c ? a : b;
#endif
}

// a*b + c, rounded once where the hardware has FMA.
FOCAL_NATIVE_INLINE double mul_add(double a, double b, double c) noexcept {
#if FOCAL_NATIVE_HAS_FMA
  return std::fma(a, b, c);
#else
  return a * b + c;
#endif
}

// s + e == a + b exactly (Knuth's TwoSum, any magnitudes).
FOCAL_NATIVE_INLINE void two_sum(double a, double b, double& s, double& e) noexcept {
  s = a + b;
  const double bb = s - a;
  e = (a - (s - bb)) + (b - bb);
}

// p + e == a * b exactly (barring underflow): FMA where available, else
// Dekker's product with Veltkamp splitting.
FOCAL_NATIVE_INLINE void two_prod(double a, double b, double& p, double& e) noexcept {
  p = a * b;
#if FOCAL_NATIVE_HAS_FMA
  e = std::fma(a, b, -p);
#else
  constexpr double split = 134217729.0;  // 2^27 + 1
  const double ca = split * a, cb = split * b;
  const double ah = ca - (ca - a), al = a - ah;
  const double bh = cb - (cb - b), bl = b - bh;
  e = ((ah * bh - p) + ah * bl + al * bh) + al * bl;
#endif
}

// ln 2 split for Cody-Waite reductions: kLn2Hi has 11 trailing zero bits, so
// k * kLn2Hi is exact for |k| < 2^11 and kLn2Hi + kLn2Lo is ln 2 to 2^-100.
inline constexpr double kLn2Hi = 0x1.62e42fefa3800p-1;
inline constexpr double kLn2Lo = 0x1.ef35793c76730p-45;

// L(z) of log_hilo and log1p_unit, full precision, z = s^2 in [0, 0.0295]:
// Estrin's scheme (a chain of 3 multiply-adds instead of Horner's 6).
FOCAL_NATIVE_INLINE double log_poly_full(double z) noexcept {
  const double z2 = z * z, z4 = z2 * z2;
  const double c01 = mul_add(0x1.99999999952e2p-2, z, 0x1.5555555555558p-1);
  const double c23 = mul_add(0x1.c71c62e5800a1p-3, z, 0x1.2492492df148dp-2);
  const double c45 = mul_add(0x1.39fe606542ddep-3, z, 0x1.7462b4ab2ef6bp-3);
  const double c03 = mul_add(c23, z2, c01);
  const double c46 = mul_add(0x1.2b584aae78a57p-3, z2, c45);
  return mul_add(c46, z4, c03);
}

// ---------------------------------------------------------------------------
// exp(x) for x <= 0 (also -inf and NaN). Results below the smallest normal
// double (x < ln DBL_MIN = -708.396) are flushed to +0.
//   x = k ln2 + r, |r| <= ln2/2 (Cody-Waite, ln2 split in two),
//   exp(r) = 1 + r + r^2 P(r).
// The flushed lanes compute garbage (x = -inf makes r NaN) that the final
// select discards; it may raise the invalid and overflow flags, which the
// kernels' FlushDenormalsScope restores on exit (callers of this function
// alone who unmask floating-point traps would see them). (A clamp of x instead let GCC propagate the clamped
// constant into a second, masked copy of the whole computation.)
//
// How that select is written decides whether GCC 12 if-converts, and so
// vectorizes, the loop around a call, and no one form works everywhere:
// Flush::select (a conditional) for q^gamma, and for the softmax loops
// except on AVX-512 (kLoopFlush, see loop_select), where the bitwise form
// left them scalar (AVX2 build); Flush::bitwise (select_bits) for the binary
// per-element formulas, where the conditional cost 27 % (3.4 -> 4.4
// ns/element, float64 fused), and for the softmax loops on AVX-512, where
// the conditional left them scalar. Both give the same values.
enum class Flush { select, bitwise };
// The form for the softmax loops (see loop_select).
#if defined(__AVX512F__)
inline constexpr Flush kLoopFlush = Flush::bitwise;
#else
inline constexpr Flush kLoopFlush = Flush::select;
#endif

template <Prec P, Flush F = Flush::select>
FOCAL_NATIVE_INLINE double exp_nonpos(double x) noexcept {
  constexpr double log2e = 0x1.71547652b82fep0;
  constexpr double shifter = 0x1.8p52;  // adding it rounds to an integer
  const double t = mul_add(x, log2e, shifter);
  const double kd = t - shifter;
  const double r = mul_add(-kd, kLn2Lo, mul_add(-kd, kLn2Hi, x));  // the inner one is exact
  const double r2 = r * r;
  double poly;
  if constexpr (P == Prec::full) {
    // Estrin's scheme: the loops that call this are bound by latency, and
    // it shortens the chain from 9 multiply-adds to 4.
    const double r4 = r2 * r2, r8 = r4 * r4;
    const double c01 = mul_add(0x1.5555555555556p-3, r, 0x1.0000000000001p-1);
    const double c23 = mul_add(0x1.11111111109b5p-7, r, 0x1.5555555553d68p-5);
    const double c45 = mul_add(0x1.a01a01a7c2efep-13, r, 0x1.6c16c17889ef1p-10);
    const double c67 = mul_add(0x1.71de0db2f6b19p-19, r, 0x1.a019b9149a41cp-16);
    const double c89 = mul_add(0x1.af389ecfc4b9cp-26, r, 0x1.28917c89a43a7p-22);
    const double c03 = mul_add(c23, r2, c01);
    const double c47 = mul_add(c67, r2, c45);
    poly = mul_add(c89, r8, mul_add(c47, r4, c03));
  } else {
    poly = 0x1.a124e3f154d32p-13;  // single: 2^-32 relative, plenty for float32 data
    poly = mul_add(poly, r, 0x1.6d431504c53d3p-10);
    poly = mul_add(poly, r, 0x1.1110e0f726534p-7);
    poly = mul_add(poly, r, 0x1.5554e9114ecf9p-5);
    poly = mul_add(poly, r, 0x1.5555555a78232p-3);
    poly = mul_add(poly, r, 0x1.0000000b8f62bp-1);
  }
  double er;
  if constexpr (P == Prec::full) {
    // 1 + r exactly as h + l (|r| < 1: Fast2Sum), so that 1 + r is not
    // rounded before the polynomial's term is added: at most 0.86 ulp in all
    // (measured, cpp/tests/test_math.cpp).
    const double h = 1.0 + r;
    const double l = r - (h - 1.0);
    er = h + mul_add(r2, poly, l);
  } else {
    er = 1.0 + mul_add(r2, poly, r);
  }
  // 2^k from the low bits of t (k in [-1022, 0] on the lanes kept, so the
  // biased exponent is at least 1).
  const std::uint64_t biased = bits_of(t) - bits_of(shifter) + 1023;
  const double scale = double_of(biased << 52);
  constexpr double ln_dbl_min = -708.3964185322641;  // below: flushed
  if constexpr (F == Flush::bitwise)
    return select_bits(x < ln_dbl_min, 0.0, er * scale);
  else
    return x < ln_dbl_min ? 0.0 : er * scale;
}

// log of a positive normal double, as hi + lo with |lo| <= ulp(hi): the sum
// carries the k*ln2 part exactly, so exp(g*(hi + lo)) keeps full accuracy for
// large |log x|. x = 0 gives -inf, x = +inf gives +inf, NaN gives NaN.
//   x = 2^k m, m in [sqrt(2)/2, sqrt(2)), f = m - 1, s = f/(2 + f),
//   log m = f - f^2/2 + s (f^2/2 + s^2 L(s^2)).
template <Prec P>
FOCAL_NATIVE_INLINE void log_hilo(double x, double& hi, double& lo) noexcept {
  constexpr std::uint64_t sqrt_half = 0x3fe6a09e667f3bcdULL;  // bits of sqrt(2)/2
  constexpr double shifter = 0x1.8p52;
  // Move the mantissa boundary from 1 to sqrt(2)/2, read k from the exponent.
  const std::uint64_t ux = bits_of(x) + (0x3ff0000000000000ULL - sqrt_half);
  const std::int64_t k = static_cast<std::int64_t>(ux >> 52) - 1023;
  const double m = double_of((ux & 0x000fffffffffffffULL) + sqrt_half);
  const double kd = double_of(bits_of(shifter) + static_cast<std::uint64_t>(k)) - shifter;
  const double f = m - 1.0;
  const double hfsq = 0.5 * f * f;
  const double s = f / (2.0 + f);
  const double z = s * s;
  double poly;
  if constexpr (P == Prec::full) {
    poly = log_poly_full(z);
  } else {
    poly = 0x1.ddced7078dd3ap-3;
    poly = mul_add(poly, z, 0x1.245c438323e9ap-2);
    poly = mul_add(poly, z, 0x1.9999eb5d84f14p-2);
    poly = mul_add(poly, z, 0x1.5555554bb2b2cp-1);
  }
  const double R = z * poly;
  const double tail = mul_add(s, hfsq + R, kd * kLn2Lo) - hfsq;
  double h, e;
  two_sum(kd * kLn2Hi, f, h, e);
  // Fold the tail into (h, e) and renormalise.
  const double t = e + tail;
  hi = h + t;
  lo = t - (hi - h);
  // Special values: 0 -> -inf, +inf and NaN pass through.
  const bool special = !(x > 0.0) || x > std::numeric_limits<double>::max();
  const double sv = x == 0.0 ? -std::numeric_limits<double>::infinity() : x + x;
  hi = special ? sv : hi;
  lo = special ? 0.0 : lo;
}

// 1/u for u in [1, 2]. Full: a division. Single: the linear minimax start
// 24/17 - 8u/17 (relative error 1/17) and three Newton steps (error squares
// each step: < 2^-32), about a third of the cost of a vector division.
template <Prec P>
FOCAL_NATIVE_INLINE double recip_1to2(double u) noexcept {
  if constexpr (P == Prec::full) {
    return 1.0 / u;
  } else {
    double r = mul_add(-8.0 / 17.0, u, 24.0 / 17.0);
    r = mul_add(r, mul_add(-u, r, 1.0), r);
    r = mul_add(r, mul_add(-u, r, 1.0), r);
    return mul_add(r, mul_add(-u, r, 1.0), r);
  }
}

// log1p(e) for e in [0, 1] (or NaN) as hi + lo, given u = fl(1 + e) and
// inv = 1/u.
// Full: log_hilo's method, specialised to u in [1, 2]: k is 0 or 1, so no
// exponent bits and no special values; k kLn2Hi + f is exact (f is a multiple
// of 2^-53 and the sum lies in [0.4, 0.7]), so no two_sum either; the
// rounding error c of u enters as c/u.
// Single: a division-free polynomial, log1p(e) = e P(e), 2^-35 relative.
template <Prec P>
FOCAL_NATIVE_INLINE void log1p_unit(double e, double u, double inv, double& hi,
                                    double& lo) noexcept {
  if constexpr (P == Prec::full) {
    const bool big = u > 0x1.6a09e667f3bcdp0;  // sqrt(2): m = u/2
    const double m = u * (big ? 0.5 : 1.0);
    const double kd = big ? 1.0 : 0.0;
    const double f = m - 1.0;  // exact
    const double hfsq = 0.5 * f * f;
    const double s = f / (m + 1.0);  // m + 1 == 2 + f, one step earlier
    const double z = s * s;
    const double R = z * log_poly_full(z);
    const double c = (1.0 - u) + e;  // exact
    const double tail = mul_add(s, hfsq + R, mul_add(kd, kLn2Lo, c * inv)) - hfsq;
    const double h = mul_add(kd, kLn2Hi, f);  // exact
    hi = h + tail;
    lo = tail - (hi - h);
  } else {
    (void)u, (void)inv;
    // Estrin's scheme: shorter dependency chains than Horner.
    const double e2 = e * e, e4 = e2 * e2, e8 = e4 * e4;
    const double c01 = mul_add(-0x1.ffffff83090a7p-2, e, 0x1.ffffffffd0cdcp-1);
    const double c23 = mul_add(-0x1.fffb1dd16699bp-3, e, 0x1.5555399fff040p-2);
    const double c45 = mul_add(-0x1.53b4260c5cffcp-3, e, 0x1.995f95ec7abe6p-3);
    const double c67 = mul_add(-0x1.cd9fcac54f9c7p-4, e, 0x1.1cdfb9f191c54p-3);
    const double c89 = mul_add(-0x1.923f3d450e431p-5, e, 0x1.5065a177b9a83p-4);
    const double cab = mul_add(-0x1.8cc7aa9740b75p-8, e, 0x1.62447f9e11576p-6);
    const double lo4 = mul_add(c23, e2, c01);
    const double mid4 = mul_add(c67, e2, c45);
    const double hi4 = mul_add(0x1.a0d0de7fa0aeap-11, e4, mul_add(cab, e2, c89));
    const double poly = mul_add(hi4, e8, mul_add(mid4, e4, lo4));
    hi = e * poly;
    lo = 0.0;
  }
}

// log1p(x) for any x > -1 (+inf gives +inf): the rounding error of u = 1 + x
// is recovered exactly and added back as c/u.
template <Prec P>
FOCAL_NATIVE_INLINE double log1p_any(double x) noexcept {
  double u, c;
  two_sum(1.0, x, u, c);  // u + c == 1 + x exactly
  double hi, lo;
  log_hilo<P>(u, hi, lo);
  const double corr = c / u;
  const double r = hi + (lo + corr);
  return x > std::numeric_limits<double>::max() ? x : r;
}

// log1p(x) for x >= 0 (+inf gives +inf, NaN gives NaN).
// Full: log1p_any. Single: without a division (log1p_any takes two): x <= 1
// goes to log1p_unit's polynomial as it is (tiny x keeps its relative
// accuracy); above, u = 1 + x (its rounding moves the result by at most
// 2^-53) is split as 2^k m, m in [1, 2), and log u = k ln2 + log1p(m - 1),
// with m - 1 exact. Measured in the softmax finish (float32, 10 classes):
// 4.3 -> 3.8 ns per row.
template <Prec P>
FOCAL_NATIVE_INLINE double log1p_nonneg(double x) noexcept {
  if constexpr (P == Prec::full) {
    return log1p_any<P>(x);
  } else {
    const double u = 1.0 + x;
    const std::uint64_t bu = bits_of(u);
    const double m = double_of((bu & 0x000fffffffffffffULL) | 0x3ff0000000000000ULL);
    // k = the biased exponent - 1023, as a double through the shifter.
    constexpr double shifter = 0x1.8p52;
    const double kd = double_of(bits_of(shifter) + (bu >> 52)) - (shifter + 1023.0);
    const bool small = x <= 1.0;
    double hi, lo;
    log1p_unit<P>(small ? x : m - 1.0, u, 0.0, hi, lo);
    const double k = small ? 0.0 : kd;
    const double r = mul_add(k, kLn2Hi, mul_add(k, kLn2Lo, hi));
    return x <= std::numeric_limits<double>::max() ? r : x + x;
  }
}

}  // namespace detail
FOCAL_NATIVE_END_NAMESPACE
