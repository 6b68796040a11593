// The boundary between the pybind11 layer and the kernels, which are compiled
// once per instruction set (kernels_*.cpp). Everything here is plain data
// outside the per-ISA namespaces, so one declaration serves every copy.
#pragma once

#include <cstdint>

namespace focal_native_bindings {

// Element types the kernels take without conversion.
enum class DType : int { f32, f64, u8, u16, u32, u64, i8, i32, i64, unsupported };

struct CallStatus {
  int code = 0;  // focal_native::Status::Code
  std::int64_t index = -1;
  double loss = 0.0;
  std::int64_t count = 0;
};

struct SigmoidCall {
  const void* logits;
  DType logits_dtype;
  const void* targets;
  DType targets_dtype;
  bool labels;  // class-index targets of shape (outer, inner)
  std::int64_t outer, classes, inner;
  double alpha, gamma, normalizer;
  int reduction;
  std::int64_t ignore_index;
  void* loss_out;         // nullable
  void* grad_out;         // nullable
  const void* grad_up;    // nullable
};

struct SoftmaxCall {
  const void* logits;
  DType logits_dtype;
  const void* targets;
  DType targets_dtype;
  bool dense;  // dense float targets of the logits' shape
  std::int64_t outer, classes, inner;
  const double* alpha;  // nullable, `classes` entries
  double alpha_scale, gamma, normalizer, label_smoothing;
  int reduction;
  std::int64_t ignore_index;
  void* loss_out;
  void* grad_out;
  const void* grad_up;
};

struct KernelTable {
  const char* isa;
  CallStatus (*sigmoid)(const SigmoidCall&);
  CallStatus (*softmax)(const SoftmaxCall&);
};

// Defined in kernels_<isa>.cpp; a table exists only for the ISAs compiled in.
const KernelTable& kernel_table_baseline();
const KernelTable& kernel_table_avx2();
const KernelTable& kernel_table_avx512();

}  // namespace focal_native_bindings
