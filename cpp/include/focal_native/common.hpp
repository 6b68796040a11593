// Types shared by every kernel: reductions, options, and the status a call
// returns instead of throwing.
#pragma once

#include <cstdint>
#include <limits>

#include "detail/config.hpp"

FOCAL_NATIVE_BEGIN_NAMESPACE

namespace detail {
// Keeps a parameter out of template argument deduction, so that a plain
// `nullptr` can be passed for an output the caller does not want.
template <class T>
struct type_identity {
  using type = T;
};
template <class T>
using nondeduced_t = typename type_identity<T>::type;
}  // namespace detail

enum class Reduction : int { none = 0, mean = 1, sum = 2 };

// What a kernel reports. Kernels never throw and never allocate; a bad target
// value is reported here, with the flat index of the first one in the targets
// array (the lowest index, whatever the thread count), and the caller decides
// what to do with it (the Python layer raises ValueError).
struct Status {
  enum Code : int {
    ok = 0,
    bad_target = 1,    // a target value outside its domain; see `index`
    bad_argument = 2,  // an option out of range (gamma < 0, alpha > 1, ...)
  };
  Code code = ok;
  std::int64_t index = -1;  // first offending flat index into the targets
  // Reduced loss (Reduction::mean or ::sum) in double; NaN for the mean of
  // nothing. Unused (0) for Reduction::none.
  double loss = 0.0;
  // Number of elements (binary) or positions (softmax) that counted.
  std::int64_t count = 0;

  constexpr explicit operator bool() const noexcept { return code == ok; }
};

// The class axis of a tensor seen as (outer, classes, inner): element
// (o, k, i) sits at (o * classes + k) * inner + i; targets given as class
// indices sit at o * inner + i. A (N, C) matrix is {N, C, 1}; NCHW
// segmentation is {N, C, H*W}.
struct ClassLayout {
  std::int64_t outer = 1;
  std::int64_t classes = 1;
  std::int64_t inner = 1;
  constexpr std::int64_t positions() const noexcept { return outer * inner; }
  constexpr std::int64_t elements() const noexcept { return outer * classes * inner; }
};

// Options of the binary (sigmoid) focal loss.
struct SigmoidOptions {
  // Weight of positives; negatives get 1 - alpha. Negative: no weighting.
  double alpha = 0.25;
  // Focusing parameter, >= 0 and finite. 0 is (weighted) cross-entropy.
  double gamma = 2.0;
  Reduction reduction = Reduction::none;
  // Every element's loss is divided by it (>= the smallest normal double, so
  // its reciprocal is finite), e.g. the number of positives.
  double normalizer = 1.0;
  // Class-index targets only: positions with this label are ignored.
  std::int64_t ignore_index = -100;
};

// Options of the multiclass (softmax) focal loss.
struct SoftmaxOptions {
  // Per-class weights (`classes` entries) or nullptr for none.
  const double* alpha = nullptr;
  // Global weight applied to every class (alpha scalar); multiplies `alpha`.
  double alpha_scale = 1.0;
  double gamma = 2.0;
  Reduction reduction = Reduction::none;
  double normalizer = 1.0;
  std::int64_t ignore_index = -100;
  // Index targets only: y = (1 - eps) onehot(c) + eps / C, eps in [0, 1).
  double label_smoothing = 0.0;
};

FOCAL_NATIVE_END_NAMESPACE
