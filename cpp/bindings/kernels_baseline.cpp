// Kernels compiled for the baseline instruction set (flags set in CMakeLists.txt).
#define FOCAL_NATIVE_ISA_NAMESPACE isa_baseline
#include "kernels_impl.hpp"

namespace focal_native_bindings {
const KernelTable& kernel_table_baseline() {
  static const KernelTable table{"baseline", &isa_baseline::sigmoid_entry, &isa_baseline::softmax_entry};
  return table;
}
}  // namespace focal_native_bindings
