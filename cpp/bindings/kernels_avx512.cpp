// Kernels compiled for the avx512 instruction set (flags set in CMakeLists.txt).
#define FOCAL_NATIVE_ISA_NAMESPACE isa_avx512
#include "kernels_impl.hpp"

namespace focal_native_bindings {
const KernelTable& kernel_table_avx512() {
  static const KernelTable table{"avx512", &isa_avx512::sigmoid_entry, &isa_avx512::softmax_entry};
  return table;
}
}  // namespace focal_native_bindings
