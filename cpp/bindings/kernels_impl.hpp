// The kernel table of one instruction set. Included by kernels_<isa>.cpp after
// it defines FOCAL_NATIVE_ISA_NAMESPACE and FOCAL_NATIVE_TABLE_FUNCTION; the
// including file is compiled with that ISA's flags.
#pragma once

#include <focal_native/focal_native.hpp>

#include "dispatch.hpp"

namespace focal_native_bindings {
namespace FOCAL_NATIVE_ISA_NAMESPACE {

namespace fn = ::focal_native;

inline CallStatus to_call_status(const fn::Status& s) {
  return {static_cast<int>(s.code), s.index, s.loss, s.count};
}

// Calls f with a typed null pointer of the element type behind `dt`.
template <class F>
CallStatus with_target_type(DType dt, F&& f) {
  switch (dt) {
    case DType::u8: return f(static_cast<const std::uint8_t*>(nullptr));
    case DType::u16: return f(static_cast<const std::uint16_t*>(nullptr));
    case DType::u32: return f(static_cast<const std::uint32_t*>(nullptr));
    case DType::u64: return f(static_cast<const std::uint64_t*>(nullptr));
    case DType::i32: return f(static_cast<const std::int32_t*>(nullptr));
    case DType::i64: return f(static_cast<const std::int64_t*>(nullptr));
    case DType::f32: return f(static_cast<const float*>(nullptr));
    case DType::f64: return f(static_cast<const double*>(nullptr));
    default: break;
  }
  CallStatus st;
  st.code = fn::Status::bad_argument;
  return st;
}

template <class T>
CallStatus sigmoid_typed(const SigmoidCall& c) {
  fn::SigmoidOptions o;
  o.alpha = c.alpha;
  o.gamma = c.gamma;
  o.normalizer = c.normalizer;
  o.reduction = static_cast<fn::Reduction>(c.reduction);
  o.ignore_index = c.ignore_index;
  const T* z = static_cast<const T*>(c.logits);
  T* loss = static_cast<T*>(c.loss_out);
  T* grad = static_cast<T*>(c.grad_out);
  const T* up = static_cast<const T*>(c.grad_up);
  return with_target_type(c.targets_dtype, [&](auto tag) -> CallStatus {
    using Y = std::remove_const_t<std::remove_pointer_t<decltype(tag)>>;
    const Y* y = static_cast<const Y*>(c.targets);
    if (c.labels) {
      if constexpr (std::is_same_v<Y, std::uint8_t> || std::is_same_v<Y, std::int32_t> ||
                    std::is_same_v<Y, std::int64_t>) {
        const fn::ClassLayout lay{c.outer, c.classes, c.inner};
        return to_call_status(
            fn::detail::sigmoid_dispatch<T, Y, true>(z, y, lay, o, loss, grad, up));
      }
    } else {
      if constexpr (!std::is_signed_v<Y> || std::is_floating_point_v<Y>) {
        const fn::ClassLayout lay{1, 1, c.outer * c.classes * c.inner};
        if constexpr (!std::is_floating_point_v<Y> || std::is_same_v<Y, T>) {
          return to_call_status(
              fn::detail::sigmoid_dispatch<T, Y, false>(z, y, lay, o, loss, grad, up));
        }
      }
    }
    CallStatus st;
    st.code = fn::Status::bad_argument;
    return st;
  });
}

inline CallStatus sigmoid_entry(const SigmoidCall& c) {
  if (c.logits_dtype == DType::f32) return sigmoid_typed<float>(c);
  if (c.logits_dtype == DType::f64) return sigmoid_typed<double>(c);
  CallStatus st;
  st.code = fn::Status::bad_argument;
  return st;
}

template <class T>
CallStatus softmax_typed(const SoftmaxCall& c) {
  fn::SoftmaxOptions o;
  o.alpha = c.alpha;
  o.alpha_scale = c.alpha_scale;
  o.gamma = c.gamma;
  o.normalizer = c.normalizer;
  o.label_smoothing = c.label_smoothing;
  o.reduction = static_cast<fn::Reduction>(c.reduction);
  o.ignore_index = c.ignore_index;
  const fn::ClassLayout lay{c.outer, c.classes, c.inner};
  const T* z = static_cast<const T*>(c.logits);
  T* loss = static_cast<T*>(c.loss_out);
  T* grad = static_cast<T*>(c.grad_out);
  const T* up = static_cast<const T*>(c.grad_up);
  return with_target_type(c.targets_dtype, [&](auto tag) -> CallStatus {
    using Y = std::remove_const_t<std::remove_pointer_t<decltype(tag)>>;
    const Y* y = static_cast<const Y*>(c.targets);
    if constexpr (std::is_same_v<Y, T> || std::is_same_v<Y, std::uint8_t> ||
                  std::is_same_v<Y, std::int32_t> || std::is_same_v<Y, std::int64_t>) {
      if (c.dense == std::is_floating_point_v<Y>)
        return to_call_status(fn::detail::softmax_dispatch<T, Y>(z, y, lay, o, loss, grad, up));
    }
    CallStatus st;
    st.code = fn::Status::bad_argument;
    return st;
  });
}

inline CallStatus softmax_entry(const SoftmaxCall& c) {
  if (c.logits_dtype == DType::f32) return softmax_typed<float>(c);
  if (c.logits_dtype == DType::f64) return softmax_typed<double>(c);
  CallStatus st;
  st.code = fn::Status::bad_argument;
  return st;
}

}  // namespace FOCAL_NATIVE_ISA_NAMESPACE
}  // namespace focal_native_bindings
