// Kernels compiled for the avx2 instruction set (flags set in CMakeLists.txt).
#define FOCAL_NATIVE_ISA_NAMESPACE isa_avx2
#include "kernels_impl.hpp"

namespace focal_native_bindings {
const KernelTable& kernel_table_avx2() {
  static const KernelTable table{"avx2", &isa_avx2::sigmoid_entry, &isa_avx2::softmax_entry};
  return table;
}
}  // namespace focal_native_bindings
