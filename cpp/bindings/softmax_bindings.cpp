// _core.softmax: the multiclass focal loss, every variant, one entry point.
#include "pybind.hpp"

#include <optional>

#include "registry.hpp"

namespace focal_native_bindings {

namespace {

py::tuple softmax(const py::array& logits, const py::array& targets, bool dense,
                  std::int64_t outer, std::int64_t classes, std::int64_t inner,
                  std::optional<py::array_t<double, py::array::c_style>> alpha, double alpha_scale,
                  double gamma, double normalizer, double label_smoothing, int reduction,
                  std::int64_t ignore_index, std::optional<py::array> loss_out,
                  std::optional<py::array> grad_out, std::optional<py::array> grad_up) {
  if (outer < 0 || classes < 0 || inner < 0)
    throw std::invalid_argument("negative layout sizes");
  if (reduction < 0 || reduction > 2) throw std::invalid_argument("bad reduction code");
  const std::int64_t n = outer * classes * inner;
  const std::int64_t npos = outer * inner;
  SoftmaxCall c{};
  c.logits = checked_data(logits, "logits", n);
  c.logits_dtype = dtype_of(logits);
  if (c.logits_dtype != DType::f32 && c.logits_dtype != DType::f64)
    throw std::invalid_argument("logits must be float32 or float64");
  c.targets = checked_data(targets, "targets", dense ? n : npos);
  c.targets_dtype = dtype_of(targets);
  if (dense && c.targets_dtype != c.logits_dtype)
    throw std::invalid_argument("dense targets must have the logits' dtype");
  c.dense = dense;
  c.outer = outer;
  c.classes = classes;
  c.inner = inner;
  if (alpha) c.alpha = static_cast<const double*>(checked_data(*alpha, "alpha", classes));
  c.alpha_scale = alpha_scale;
  c.gamma = gamma;
  c.normalizer = normalizer;
  c.label_smoothing = label_smoothing;
  c.reduction = reduction;
  c.ignore_index = ignore_index;
  auto same_dtype = [&](const py::array& a, const char* name) {
    if (dtype_of(a) != c.logits_dtype)
      throw std::invalid_argument(std::string(name) + " must have the logits' dtype");
  };
  if (loss_out) {
    same_dtype(*loss_out, "out");
    c.loss_out = checked_mutable_data(*loss_out, "out", npos);
  }
  if (grad_out) {
    same_dtype(*grad_out, "grad_out");
    c.grad_out = checked_mutable_data(*grad_out, "grad_out", n);
  }
  if (grad_up) {
    same_dtype(*grad_up, "grad_output");
    c.grad_up = checked_data(*grad_up, "grad_output", npos);
  }
  CallStatus st;
  const int ov = find_overlap(bytes_of(logits),
                              {bytes_of(targets), grad_up ? bytes_of(*grad_up) : Bytes{},
                               alpha ? bytes_of(*alpha) : Bytes{}},
                              loss_out, grad_out);
  if (ov >= 0) {
    st.code = kOverlap;
    st.index = ov;
    return status_tuple(st);
  }
  {
    py::gil_scoped_release release;
    st = kernels().softmax(c);
  }
  return status_tuple(st);
}

}  // namespace

void register_softmax(py::module_& m) {
  m.def("softmax", &softmax, py::arg("logits"), py::arg("targets"), py::arg("dense"),
        py::arg("outer"), py::arg("classes"), py::arg("inner"), py::arg("alpha"),
        py::arg("alpha_scale"), py::arg("gamma"), py::arg("normalizer"),
        py::arg("label_smoothing"), py::arg("reduction"), py::arg("ignore_index"),
        py::arg("loss_out"), py::arg("grad_out"), py::arg("grad_output"),
        "Softmax focal loss kernel. Returns (status_code, bad_index, reduced_loss, count).");
}

}  // namespace focal_native_bindings
