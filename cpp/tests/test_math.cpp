// The elementary functions of detail/math.hpp on their own, against long
// double: exp of non-positive arguments (full and single precision) and
// log1p on [0, 1] as hi + lo. The kernels' tests measure these only through
// the loss and gradient, where other roundings add to them.
#include <focal_native/detail/math.hpp>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>

#include "check.hpp"

namespace fd = focal_native::detail;
using fntest::LD;

namespace {

bool is_pos_zero(double x) { return x == 0.0 && !std::signbit(x); }

// |got - ref| in ulps of double at ref, with no floor (fntest::ulps counts in
// units of at least 16 DBL_MIN, which would hide a flush of a result near
// DBL_MIN); recorded in the ulp table under `key`.
bool within_ulps(const char* key, LD bound, LD got, LD ref, const std::string& where) {
  const LD unit = std::ldexp(1.0L, std::ilogb(ref) - (std::numeric_limits<double>::digits - 1));
  const LD u = std::fabs(got - ref) / unit;
  fntest::UlpEntry& t = fntest::ulp_table()[key];
  t.bound = bound;
  ++t.count;
  if (!(u <= t.max)) {
    t.max = u;
    t.where = where;
  }
  return u <= bound;
}

// Arguments for exp: a dense sweep of [-745, 0], the ends of the flushed
// range, and each power-of-two magnitude down to the smallest subnormal.
template <class F>
void for_each_exp_arg(F&& f) {
  for (int i = 0; i <= 745 * 64; ++i) f(-static_cast<double>(i) / 64.0);
  std::mt19937_64 rng(20261127);
  std::uniform_real_distribution<double> u(-709.0, 0.0);
  for (int i = 0; i < 200000; ++i) f(u(rng));
  for (int k = -1074; k <= 9; ++k) f(-std::ldexp(1.0, k));
  const double edges[] = {-708.3964185322641, std::nextafter(-708.3964185322641, 0.0),
                          std::nextafter(-708.3964185322641, -1.0), -708.5, -745.2, -1e300,
                          -std::numeric_limits<double>::max(), -0.0, 0.0};
  for (double x : edges) f(x);
}

}  // namespace

FN_TEST(exp_nonpos_full_within_one_ulp_and_flushes_below_dbl_min) {
  for_each_exp_arg([](double x) {
    const double got = fd::exp_nonpos<fd::Prec::full>(x);
    if (x < -708.3964185322641) {
      CHECK_MSG(is_pos_zero(got), "exp(%.17g) = %.17g, want +0 (flushed)", x, got);
      return;
    }
    const LD ref = std::exp(static_cast<LD>(x));
    CHECK_MSG(within_ulps("math exp_nonpos full", 1.0, got, ref, fntest::format("x = %.17g", x)),
              "exp(%.17g) = %.17g, reference %.21Lg", x, got, ref);
  });
  CHECK(is_pos_zero(fd::exp_nonpos<fd::Prec::full>(-std::numeric_limits<double>::infinity())));
  CHECK(std::isnan(fd::exp_nonpos<fd::Prec::full>(std::numeric_limits<double>::quiet_NaN())));
  CHECK(fd::exp_nonpos<fd::Prec::full>(-0.0) == 1.0);
}

FN_TEST(exp_nonpos_flush_forms_give_the_same_bits) {
  auto same = [](double x) {
    const double a = fd::exp_nonpos<fd::Prec::full, fd::Flush::select>(x);
    const double b = fd::exp_nonpos<fd::Prec::full, fd::Flush::bitwise>(x);
    const double c = fd::exp_nonpos<fd::Prec::single, fd::Flush::select>(x);
    const double d = fd::exp_nonpos<fd::Prec::single, fd::Flush::bitwise>(x);
    CHECK_MSG(std::memcmp(&a, &b, sizeof a) == 0 && std::memcmp(&c, &d, sizeof c) == 0,
              "x = %.17g: %.17g vs %.17g, %.17g vs %.17g", x, a, b, c, d);
  };
  for_each_exp_arg(same);
  same(-std::numeric_limits<double>::infinity());
  same(std::numeric_limits<double>::quiet_NaN());
}

FN_TEST(exp_nonpos_single_within_2_pow_minus_31_relative) {
  for_each_exp_arg([](double x) {
    const double got = fd::exp_nonpos<fd::Prec::single>(x);
    if (x < -708.3964185322641) {
      CHECK_MSG(is_pos_zero(got), "exp(%.17g) = %.17g, want +0 (flushed)", x, got);
      return;
    }
    const LD ref = std::exp(static_cast<LD>(x));
    const LD rel = std::fabs(static_cast<LD>(got) - ref) / ref;
    CHECK_MSG(rel <= std::ldexp(1.0L, -31), "exp(%.17g): relative error %Lg", x, rel);
  });
  CHECK(is_pos_zero(fd::exp_nonpos<fd::Prec::single>(-std::numeric_limits<double>::infinity())));
  CHECK(std::isnan(fd::exp_nonpos<fd::Prec::single>(std::numeric_limits<double>::quiet_NaN())));
}

FN_TEST(log1p_unit_full_hi_lo_within_half_ulp) {
  auto check = [](double e) {
    const double u = 1.0 + e;
    const double inv = 1.0 / u;
    double hi, lo;
    fd::log1p_unit<fd::Prec::full>(e, u, inv, hi, lo);
    const LD ref = std::log1p(static_cast<LD>(e));
    // hi + lo, added in long double, is measured in ulps of double: about
    // 0.3 ulp from the polynomial and its evaluation, up to 0.5 where e is
    // below 2^-53 (then log1p(e) = e - e^2/2 is returned as e). hi is that
    // pair rounded to double, so within another half ulp.
    if (e == 0.0) {
      CHECK(is_pos_zero(hi) && lo == 0.0);
      return;
    }
    const std::string where = fntest::format("e = %.17g", e);
    CHECK_MSG(within_ulps("math log1p_unit full (hi + lo)", 0.55, static_cast<LD>(hi) + lo, ref,
                          where),
              "%s: hi + lo = %.21Lg, reference %.21Lg", where.c_str(), static_cast<LD>(hi) + lo,
              ref);
    CHECK_MSG(within_ulps("math log1p_unit full (hi)", 1.0, hi, ref, where),
              "%s: hi = %.17g, reference %.21Lg", where.c_str(), hi, ref);
    CHECK_MSG(std::fabs(lo) <= std::ldexp(std::fabs(hi), -52), "e = %.17g: |lo| %g > ulp(hi)",
              e, lo);
  };
  for (int i = 0; i <= 1 << 20; ++i) check(std::ldexp(static_cast<double>(i), -20));
  std::mt19937_64 rng(7);
  std::uniform_real_distribution<double> un(0.0, 1.0);
  for (int i = 0; i < 200000; ++i) check(un(rng));
  // Around sqrt(2) - 1, where the reduction switches to m = u / 2.
  for (int i = -20000; i <= 20000; ++i) check(0x1.a827999fcef32p-2 + std::ldexp(i, -52));
  for (int k = -1022; k <= 0; ++k) check(std::ldexp(1.0, k));
  double hi, lo;
  fd::log1p_unit<fd::Prec::full>(0.0, 1.0, 1.0, hi, lo);
  CHECK(is_pos_zero(hi) && lo == 0.0);
  const double nan = std::numeric_limits<double>::quiet_NaN();
  fd::log1p_unit<fd::Prec::full>(nan, nan, nan, hi, lo);
  CHECK(std::isnan(hi));
}

// log1p of x >= 0 without a division (single precision: the softmax
// finish's log S for float32 data): 2^-33 relative over [0, 1e300], across
// the switch at x = 1 and each power of two (the split u = 2^k m); +inf and
// NaN pass through. Full precision is log1p_any itself.
FN_TEST(log1p_nonneg_single_within_2_pow_minus_33_relative) {
  auto check = [](double x) {
    const double got = fd::log1p_nonneg<fd::Prec::single>(x);
    if (x == 0.0) {
      CHECK_MSG(got == 0.0, "log1p_nonneg(0) = %.17g", got);
      return;
    }
    const LD ref = std::log1p(static_cast<LD>(x));
    const LD rel = std::fabs(static_cast<LD>(got) - ref) / ref;
    CHECK_MSG(rel <= std::ldexp(1.0L, -33), "log1p_nonneg(%.17g) = %.17g: relative error %Lg",
              x, got, rel);
  };
  for (int i = 0; i <= 1 << 16; ++i) check(std::ldexp(static_cast<double>(i), -14));  // [0, 4]
  std::mt19937_64 rng(11);
  std::uniform_real_distribution<double> un(0.0, 1.0), ex(-40.0, 700.0);
  for (int i = 0; i < 200000; ++i) check(un(rng));
  for (int i = 0; i < 200000; ++i) check(std::exp(ex(rng)));
  for (int k = -1022; k <= 1000; ++k) {
    const double p = std::ldexp(1.0, k);
    check(p);
    check(std::nextafter(p, 0.0));
    check(std::nextafter(p, 2 * p));
    check(p - 1.0 > 0.0 ? p - 1.0 : p);
  }
  check(std::nextafter(1.0, 0.0));
  check(std::nextafter(1.0, 2.0));
  check(std::numeric_limits<double>::max());
  const double inf = std::numeric_limits<double>::infinity();
  CHECK(fd::log1p_nonneg<fd::Prec::single>(inf) == inf);
  CHECK(std::isnan(fd::log1p_nonneg<fd::Prec::single>(std::numeric_limits<double>::quiet_NaN())));
  CHECK(fd::log1p_nonneg<fd::Prec::full>(3.0) == fd::log1p_any<fd::Prec::full>(3.0));
}
