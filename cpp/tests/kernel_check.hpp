// Compares the three entry points of a kernel (loss, gradient, fused) with a
// long double reference, for any reduction, normalizer and upstream gradient.
#pragma once

#include <focal_native/common.hpp>

#include <cmath>
#include <cstdint>
#include <string>
#include <type_traits>
#include <vector>

#include "check.hpp"

namespace fntest {

// Reference values: one loss per loss slot (element for sigmoid, position for
// softmax), one gradient per logit, and the size of the terms each gradient
// is a difference of (0 where it is a product, so plain ulps apply).
// Optional, same sizes: `extra_*` widens the bound of single values where a
// documented limitation applies (added to the bound); `allow_*` grants extra
// ulps for a known issue, counted apart (see CHECK_ULPS_ALLOW).
struct Expect {
  std::vector<LD> loss, grad, gscale;
  std::vector<LD> extra_loss, extra_grad;
  std::vector<LD> allow_loss, allow_grad;
};

inline const char* red_name(focal_native::Reduction r) {
  return r == focal_native::Reduction::none ? "none"
         : r == focal_native::Reduction::mean ? "mean"
                                              : "sum";
}

// Bound on a reduced loss, in ulps: the per-value bound plus one rounding per
// term added (n non-negative terms: no cancellation).
inline LD sum_bound(LD per_value, std::size_t n) { return per_value + 2 + static_cast<LD>(n); }

// call(loss_out, grad_out, grad_output, which) runs entry point `which`
// (0: loss, 1: grad, 2: fused) and returns its Status. pos_of(j) is the loss
// slot of logit j (where its upstream gradient lives). describe(j) and
// describe_slot(i) say which input a logit / loss slot came from.
template <class T, class Opt, class Call, class PosOf, class Describe, class DescribeSlot>
void compare(const std::string& tag, std::size_t n, const Expect& e, std::int64_t expect_count,
             const Opt& o, const std::vector<T>* up, LD bound_loss, LD bound_grad,
             bool scaled_grad, Call&& call, PosOf&& pos_of, Describe&& describe,
             DescribeSlot&& describe_slot) {
  namespace fn = focal_native;
  const std::size_t nslots = e.loss.size();
  const LD norm = o.normalizer;
  const bool none = o.reduction == fn::Reduction::none;
  const LD gdiv = o.reduction == fn::Reduction::mean && expect_count > 0
                      ? norm * static_cast<LD>(expect_count)
                      : norm;
  const std::string key = tag + " " + red_name(o.reduction);
  LD total = 0;
  for (LD v : e.loss) total += v;
  const LD reduced = o.reduction == fn::Reduction::mean
                         ? (expect_count > 0 ? total / norm / static_cast<LD>(expect_count) : NAN)
                         : total / norm;

  std::vector<T> loss(nslots, T(-7)), loss3(nslots, T(-7)), grad(n, T(-7)), grad3(n, T(-7));
  const fn::Status s1 = call(none ? loss.data() : nullptr, nullptr, nullptr, 0);
  const fn::Status s2 = call(nullptr, grad.data(), up ? up->data() : nullptr, 1);
  const fn::Status s3 = call(none ? loss3.data() : nullptr, grad3.data(), nullptr, 2);
  for (const fn::Status* s : {&s1, &s2, &s3}) {
    CHECK_MSG(s->code == fn::Status::ok && s->index == -1, "%s: status %d index %lld",
              key.c_str(), static_cast<int>(s->code), static_cast<long long>(s->index));
    CHECK_MSG(s->count == expect_count, "%s: count %lld, expected %lld", key.c_str(),
              static_cast<long long>(s->count), static_cast<long long>(expect_count));
  }
  if (none) {
    CHECK(s1.loss == 0.0 && s3.loss == 0.0);
    for (std::size_t i = 0; i < nslots; ++i) {
      const LD allow = e.allow_loss.empty() ? 0 : e.allow_loss[i];
      const LD bl = bound_loss + (e.extra_loss.empty() ? 0 : e.extra_loss[i]);
      CHECK_ULPS_ALLOW(key + " loss", bl, allow, loss[i], e.loss[i] / norm, 0, "%s",
                       describe_slot(i).c_str());
      CHECK_ULPS_ALLOW(key + " fused loss", bl, allow, loss3[i], e.loss[i] / norm, 0,
                       "%s", describe_slot(i).c_str());
    }
  } else {
    const LD b = sum_bound(bound_loss, nslots);
    CHECK_ULPS(key + " reduced", b, static_cast<T>(s1.loss), reduced, 0, "%zu terms", nslots);
    // The double Status::loss of float data comes from float-accurate terms.
    if constexpr (std::is_same_v<T, double>)
      CHECK_ULPS(key + " reduced (Status::loss)", b, s1.loss, reduced, 0, "%zu terms", nslots);
    if (!kMayContract)
      CHECK_MSG(s1.loss == s3.loss || (std::isnan(s1.loss) && std::isnan(s3.loss)),
                "%s: fused reduced loss %.17g != loss-only %.17g", key.c_str(), s3.loss, s1.loss);
    else
      CHECK_ULPS(key + " fused vs loss-only reduced", 4, s3.loss, static_cast<LD>(s1.loss), 0,
                 "%zu terms", nslots);
  }
  // grad_output is used with Reduction::none only.
  const bool use_up = up && none;
  const std::string gkey = key + (use_up ? " grad*grad_output" : " grad");
  for (std::size_t j = 0; j < n; ++j) {
    const LD u = use_up ? static_cast<LD>((*up)[pos_of(j)]) : 1;
    const LD sc = scaled_grad ? e.gscale[j] / gdiv : 0;
    const LD allow = e.allow_grad.empty() ? 0 : e.allow_grad[j];
    const LD bg = bound_grad + (e.extra_grad.empty() ? 0 : e.extra_grad[j]);
    CHECK_ULPS_ALLOW(gkey, bg, allow, grad[j], u * e.grad[j] / gdiv, std::fabs(u) * sc,
                     "%s", describe(j).c_str());
    CHECK_ULPS_ALLOW(key + " fused grad", bg, allow, grad3[j], e.grad[j] / gdiv, sc,
                     "%s", describe(j).c_str());
  }
}

}  // namespace fntest
