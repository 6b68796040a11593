// _core.softmax: the multiclass focal loss, every variant, one entry point.
#include "pybind.hpp"

#include <optional>

#include "fast_args.hpp"
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

// The public functions' arguments as given; None where the Python layer must
// check them (see fast_args.hpp): per-class alpha vectors, dense targets with
// label smoothing, dtype conversions, anything unusual and every error.
py::object softmax_fast(int mode, py::handle logits, py::handle targets, py::handle alpha,
                        py::handle gamma, py::handle reduction, py::handle axis,
                        py::handle ignore_index, py::handle label_smoothing,
                        py::handle normalizer, py::handle out, py::handle grad_out) {
  namespace f = fast;
  const py::object decline = py::none();
  SoftmaxCall c{};
  if (!f::common(mode, logits, targets, gamma, reduction, normalizer, ignore_index, c) ||
      !f::real(label_smoothing, c.label_smoothing) ||
      !(c.label_smoothing >= 0.0 && c.label_smoothing < 1.0))
    return decline;
  c.alpha_scale = 1.0;
  if (!alpha.is_none() &&
      !(f::real(alpha, c.alpha_scale) && std::isfinite(c.alpha_scale) && c.alpha_scale >= 0.0))
    return decline;
  const auto* pz = f::proxy(logits);
  const int nd = pz->nd;
  int ax = 0;
  if (!f::axis(axis, nd, ax)) return decline;
  const ssize_t* dims = pz->dimensions;
  f::layout(dims, nd, ax, c.outer, c.classes, c.inner);
  if (c.classes == 0) return decline;
  if (f::is_int_kind(targets) && f::shape_without_axis(targets, logits, ax)) {
    c.targets_dtype = f::dtype_of(targets, false);
    if (!f::label_dtype(c.targets_dtype)) return decline;
  } else if (f::same_shape(targets, logits) && c.label_smoothing == 0.0 &&
             f::dtype_of(targets, false) == c.logits_dtype) {
    c.targets_dtype = c.logits_dtype;
    c.dense = true;
  } else {
    return decline;
  }
  c.logits = pz->data;
  c.targets = f::proxy(targets)->data;
  const bool none = c.reduction == 0;
  std::vector<ssize_t> pos(dims, dims + nd);
  pos.erase(pos.begin() + ax);
  f::Outputs outs;
  if (!f::outputs(mode, none, logits, c.logits_dtype, targets, out, grad_out, pos.data(),
                  nd - 1, outs))
    return decline;
  c.loss_out = f::data_or_null(outs.loss);
  c.grad_out = f::data_or_null(outs.grad);
  return f::run(mode, c, outs, kernels().softmax);
}

}  // namespace

void register_softmax(py::module_& m) {
  m.def("softmax", &softmax, py::arg("logits"), py::arg("targets"), py::arg("dense"),
        py::arg("outer"), py::arg("classes"), py::arg("inner"), py::arg("alpha"),
        py::arg("alpha_scale"), py::arg("gamma"), py::arg("normalizer"),
        py::arg("label_smoothing"), py::arg("reduction"), py::arg("ignore_index"),
        py::arg("loss_out"), py::arg("grad_out"), py::arg("grad_output"),
        "Softmax focal loss kernel. Returns (status_code, bad_index, reduced_loss, count).");
  fast::add_fastcall<&softmax_fast, 11>(m, "softmax_fast");
}

}  // namespace focal_native_bindings
