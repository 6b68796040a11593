// Every (logits, targets) type pair the tests call, declared `extern
// template` so that each kernel is compiled once, in the instantiate_*.cpp
// files (in parallel), instead of once per test file that calls it: the
// kernels dominate the build time of the tests.
#pragma once

#include <focal_native/focal_native.hpp>

#include <cstdint>

// Binary, elementwise targets.
#define FN_TEST_SIGMOID_ELEMENTWISE(EXT, T, Y)                                              \
  EXT template focal_native::Status focal_native::sigmoid_focal_loss<T, Y>(                \
      const T*, const Y*, std::int64_t, const focal_native::SigmoidOptions&, T*) noexcept; \
  EXT template focal_native::Status focal_native::sigmoid_focal_loss_grad<T, Y>(           \
      const T*, const Y*, std::int64_t, const focal_native::SigmoidOptions&, T*,           \
      const T*) noexcept;                                                                   \
  EXT template focal_native::Status focal_native::sigmoid_focal_loss_with_grad<T, Y>(      \
      const T*, const Y*, std::int64_t, const focal_native::SigmoidOptions&, T*, T*) noexcept;

// Binary, class-index labels.
#define FN_TEST_SIGMOID_LABELS(EXT, T, L)                                                   \
  EXT template focal_native::Status focal_native::sigmoid_focal_loss<T, L>(                \
      const T*, const L*, focal_native::ClassLayout, const focal_native::SigmoidOptions&,   \
      T*) noexcept;                                                                         \
  EXT template focal_native::Status focal_native::sigmoid_focal_loss_grad<T, L>(           \
      const T*, const L*, focal_native::ClassLayout, const focal_native::SigmoidOptions&,   \
      T*, const T*) noexcept;                                                               \
  EXT template focal_native::Status focal_native::sigmoid_focal_loss_with_grad<T, L>(      \
      const T*, const L*, focal_native::ClassLayout, const focal_native::SigmoidOptions&,   \
      T*, T*) noexcept;

// Softmax, class indices (Y integral) or dense targets (Y == T).
#define FN_TEST_SOFTMAX(EXT, T, Y)                                                          \
  EXT template focal_native::Status focal_native::softmax_focal_loss<T, Y>(                \
      const T*, const Y*, focal_native::ClassLayout, const focal_native::SoftmaxOptions&,   \
      T*) noexcept;                                                                         \
  EXT template focal_native::Status focal_native::softmax_focal_loss_grad<T, Y>(           \
      const T*, const Y*, focal_native::ClassLayout, const focal_native::SoftmaxOptions&,   \
      T*, const T*) noexcept;                                                               \
  EXT template focal_native::Status focal_native::softmax_focal_loss_with_grad<T, Y>(      \
      const T*, const Y*, focal_native::ClassLayout, const focal_native::SoftmaxOptions&,   \
      T*, T*) noexcept;

#define FN_TEST_SIGMOID_ELEMENTWISE_TYPES(X, EXT) \
  X(EXT, double, std::uint8_t)                    \
  X(EXT, float, std::uint8_t)                     \
  X(EXT, double, std::int32_t)                    \
  X(EXT, float, bool)                             \
  X(EXT, double, bool)                            \
  X(EXT, double, double)                          \
  X(EXT, float, float)

#define FN_TEST_SIGMOID_LABELS_TYPES(X, EXT) \
  X(EXT, double, std::int64_t)               \
  X(EXT, float, std::int64_t)                \
  X(EXT, double, std::int32_t)               \
  X(EXT, float, std::uint8_t)                \
  X(EXT, double, std::uint64_t)

// One file each: the softmax index kernels are the largest.
#define FN_TEST_SOFTMAX_INDEX_TYPES_1(X, EXT) X(EXT, double, std::int64_t)
#define FN_TEST_SOFTMAX_INDEX_TYPES_2(X, EXT) X(EXT, float, std::int64_t)
#define FN_TEST_SOFTMAX_INDEX_TYPES_3(X, EXT) X(EXT, float, std::uint8_t)

#define FN_TEST_SOFTMAX_DENSE_TYPES(X, EXT) \
  X(EXT, double, double)                    \
  X(EXT, float, float)

#ifndef FN_TEST_INSTANTIATE
FN_TEST_SIGMOID_ELEMENTWISE_TYPES(FN_TEST_SIGMOID_ELEMENTWISE, extern)
FN_TEST_SIGMOID_LABELS_TYPES(FN_TEST_SIGMOID_LABELS, extern)
FN_TEST_SOFTMAX_INDEX_TYPES_1(FN_TEST_SOFTMAX, extern)
FN_TEST_SOFTMAX_INDEX_TYPES_2(FN_TEST_SOFTMAX, extern)
FN_TEST_SOFTMAX_INDEX_TYPES_3(FN_TEST_SOFTMAX, extern)
FN_TEST_SOFTMAX_DENSE_TYPES(FN_TEST_SOFTMAX, extern)
#endif
