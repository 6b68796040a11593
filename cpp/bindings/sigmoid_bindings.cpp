// _core.sigmoid: the binary focal loss, every variant, one entry point.
#include "pybind.hpp"

#include <optional>

#include "registry.hpp"

namespace focal_native_bindings {

namespace {

py::tuple sigmoid(const py::array& logits, const py::array& targets, bool labels,
                  std::int64_t outer, std::int64_t classes, std::int64_t inner, double alpha,
                  double gamma, double normalizer, int reduction, std::int64_t ignore_index,
                  std::optional<py::array> loss_out, std::optional<py::array> grad_out,
                  std::optional<py::array> grad_up) {
  if (outer < 0 || classes < 0 || inner < 0)
    throw std::invalid_argument("negative layout sizes");
  if (reduction < 0 || reduction > 2) throw std::invalid_argument("bad reduction code");
  const std::int64_t n = outer * classes * inner;
  SigmoidCall c{};
  c.logits = checked_data(logits, "logits", n);
  c.logits_dtype = dtype_of(logits);
  if (c.logits_dtype != DType::f32 && c.logits_dtype != DType::f64)
    throw std::invalid_argument("logits must be float32 or float64");
  c.targets = checked_data(targets, "targets", labels ? outer * inner : n);
  c.targets_dtype = dtype_of(targets);
  c.labels = labels;
  c.outer = outer;
  c.classes = classes;
  c.inner = inner;
  c.alpha = alpha;
  c.gamma = gamma;
  c.normalizer = normalizer;
  c.reduction = reduction;
  c.ignore_index = ignore_index;
  auto same_dtype = [&](const py::array& a, const char* name) {
    if (dtype_of(a) != c.logits_dtype)
      throw std::invalid_argument(std::string(name) + " must have the logits' dtype");
  };
  if (loss_out) {
    same_dtype(*loss_out, "out");
    c.loss_out = checked_mutable_data(*loss_out, "out", n);
  }
  if (grad_out) {
    same_dtype(*grad_out, "grad_out");
    c.grad_out = checked_mutable_data(*grad_out, "grad_out", n);
  }
  if (grad_up) {
    same_dtype(*grad_up, "grad_output");
    c.grad_up = checked_data(*grad_up, "grad_output", n);
  }
  CallStatus st;
  const int ov = find_overlap(bytes_of(logits),
                              {bytes_of(targets), grad_up ? bytes_of(*grad_up) : Bytes{}},
                              loss_out, grad_out);
  if (ov >= 0) {
    st.code = kOverlap;
    st.index = ov;
    return status_tuple(st);
  }
  {
    py::gil_scoped_release release;
    st = kernels().sigmoid(c);
  }
  return status_tuple(st);
}

}  // namespace

void register_sigmoid(py::module_& m) {
  m.def("sigmoid", &sigmoid, py::arg("logits"), py::arg("targets"), py::arg("labels"),
        py::arg("outer"), py::arg("classes"), py::arg("inner"), py::arg("alpha"),
        py::arg("gamma"), py::arg("normalizer"), py::arg("reduction"),
        py::arg("ignore_index"), py::arg("loss_out"), py::arg("grad_out"),
        py::arg("grad_output"),
        "Binary focal loss kernel. Returns (status_code, bad_index, reduced_loss, count).");
}

}  // namespace focal_native_bindings
