// Argument reading for the fast entry points (_core.sigmoid_fast and
// _core.softmax_fast).
//
// A small call is dominated by argument handling: the Python layer's checks
// cost ~3.5 us against ~2 us for the kernel on 1,000 elements. The fast entry
// points take the public functions' arguments as they came and accept only
// the common, unambiguous cases (exact ndarrays, native dtypes, C-contiguous,
// plain Python numbers). Anything else, and anything that would be an error,
// is declined (they return None) and the Python layer runs its full checks,
// with its messages. They never raise for bad input; declining costs a few
// hundred nanoseconds at most.
#pragma once

#include "pybind.hpp"

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <utility>
#include <vector>

#include "dispatch.hpp"
#include "registry.hpp"

namespace focal_native_bindings {
namespace fast {

// What a fast entry point computes (the public function it serves).
enum Mode : int { kLoss = 1, kGrad = 2, kBoth = 3 };

inline const py::detail::PyArray_Proxy* proxy(py::handle h) {
  return py::detail::array_proxy(h.ptr());
}

// Exactly numpy.ndarray (a subclass may override anything: declined).
inline bool is_ndarray(py::handle h) {
  return Py_TYPE(h.ptr()) == py::detail::npy_api::get().PyArray_Type_;
}

// C-contiguous and aligned (NPY_ARRAY_C_CONTIGUOUS | NPY_ARRAY_ALIGNED).
inline bool plain_layout(py::handle h) {
  constexpr int want = py::detail::npy_api::NPY_ARRAY_C_CONTIGUOUS_ | 0x0100;
  return (proxy(h)->flags & want) == want;
}

inline bool writeable(py::handle h) {
  return (proxy(h)->flags & py::detail::npy_api::NPY_ARRAY_WRITEABLE_) != 0;
}

// The element type of an array in native byte order, by kind and size, the
// way the Python layer maps it. `unsigned_ints`: signed integers map to the
// unsigned type of their size (0/1 labels: negatives become huge, hence bad).
inline DType dtype_of(py::handle h, bool unsigned_ints) {
  const auto* d = py::detail::array_descriptor_proxy(proxy(h)->descr);
  const std::uint16_t probe = 1;
  const bool little = *reinterpret_cast<const unsigned char*>(&probe) == 1;
  if (d->byteorder == (little ? '>' : '<')) return DType::unsupported;  // byte-swapped
  const auto size = py::reinterpret_borrow<py::dtype>(proxy(h)->descr).itemsize();
  switch (d->kind) {
    case 'f':
      // By type code, as the Python layer does: an 8-byte long double ('g',
      // e.g. on Windows) is not float64 there.
      if (d->type == 'f' && size == 4) return DType::f32;
      if (d->type == 'd' && size == 8) return DType::f64;
      return DType::unsupported;
    case 'b':
      return size == 1 ? DType::u8 : DType::unsupported;
    case 'u':
    case 'i': {
      const bool u = d->kind == 'u' || unsigned_ints;
      if (size == 1) return u ? DType::u8 : DType::i8;
      if (size == 2) return u ? DType::u16 : DType::unsupported;
      if (size == 4) return u ? DType::u32 : DType::i32;
      if (size == 8) return u ? DType::u64 : DType::i64;
      return DType::unsupported;
    }
    default:
      return DType::unsupported;
  }
}

inline bool is_int_kind(py::handle h) {
  const char k = py::detail::array_descriptor_proxy(proxy(h)->descr)->kind;
  return k == 'i' || k == 'u';
}

inline bool has_dims(py::handle a, const ssize_t* dims, int nd) {
  const auto* p = proxy(a);
  if (p->nd != nd) return false;
  for (int i = 0; i < nd; ++i)
    if (p->dimensions[i] != dims[i]) return false;
  return true;
}

inline bool same_shape(py::handle a, py::handle b) {
  return has_dims(a, proxy(b)->dimensions, proxy(b)->nd);
}

// Class-index labels the kernels read in place (others are converted in Python).
inline bool label_dtype(DType dt) { return dt == DType::u8 || dt == DType::i32 || dt == DType::i64; }

// Whether `t` has the shape of `z` without axis `ax`.
inline bool shape_without_axis(py::handle t, py::handle z, int ax) {
  const auto* pt = proxy(t);
  const auto* pz = proxy(z);
  if (pt->nd != pz->nd - 1) return false;
  for (int i = 0, j = 0; i < pz->nd; ++i) {
    if (i == ax) continue;
    if (pt->dimensions[j++] != pz->dimensions[i]) return false;
  }
  return true;
}

inline std::int64_t size_of(py::handle h) {
  const auto* p = proxy(h);
  std::int64_t n = 1;
  for (int i = 0; i < p->nd; ++i) n *= p->dimensions[i];
  return n;
}

inline Bytes bytes(py::handle h) {
  const auto* p = proxy(h);
  const auto item = py::reinterpret_borrow<py::dtype>(p->descr).itemsize();
  return {p->data, p->data + size_of(h) * item};
}

// A plain Python float or int (not bool) as a double; false otherwise or when
// an int does not convert.
inline bool real(py::handle h, double& v) {
  PyObject* o = h.ptr();
  if (PyFloat_CheckExact(o)) {
    v = PyFloat_AS_DOUBLE(o);
    return true;
  }
  if (PyLong_CheckExact(o)) {
    v = PyLong_AsDouble(o);
    if (v == -1.0 && PyErr_Occurred()) {
      PyErr_Clear();
      return false;
    }
    return true;
  }
  return false;
}

// A plain Python int (not bool) within int64.
inline bool int64(py::handle h, std::int64_t& v) {
  PyObject* o = h.ptr();
  if (!PyLong_CheckExact(o)) return false;
  int overflow = 0;
  const long long x = PyLong_AsLongLongAndOverflow(o, &overflow);
  if (overflow != 0 || (x == -1 && PyErr_Occurred())) {
    PyErr_Clear();
    return false;
  }
  v = static_cast<std::int64_t>(x);
  return true;
}

// The reduction code of an exact str ("none" 0, "mean" 1, "sum" 2), else -1.
inline int reduction(py::handle h) {
  PyObject* o = h.ptr();
  if (!PyUnicode_CheckExact(o)) return -1;
  if (PyUnicode_CompareWithASCIIString(o, "mean") == 0) return 1;
  if (PyUnicode_CompareWithASCIIString(o, "none") == 0) return 0;
  if (PyUnicode_CompareWithASCIIString(o, "sum") == 0) return 2;
  return -1;
}

inline bool gamma(py::handle h, double& g) { return real(h, g) && std::isfinite(g) && g >= 0.0; }

inline bool normalizer(py::handle h, double& v) {
  if (h.is_none()) {
    v = 1.0;
    return true;
  }
  return real(h, v) && std::isfinite(v) && v >= std::numeric_limits<double>::min();
}

// An axis of an ndim-dimensional array, normalized to [0, ndim).
inline bool axis(py::handle h, int ndim, int& ax) {
  std::int64_t a = 0;
  if (!int64(h, a) || ndim == 0 || a < -ndim || a >= ndim) return false;
  ax = static_cast<int>(a < 0 ? a + ndim : a);
  return true;
}

// The logits: an exact ndarray of native float32/float64, C-contiguous.
inline bool logits(py::handle h, DType& dt) {
  if (!is_ndarray(h) || !plain_layout(h)) return false;
  dt = dtype_of(h, false);
  return dt == DType::f32 || dt == DType::f64;
}

// An input array other than the logits: exact ndarray, C-contiguous, aligned.
inline bool input(py::handle h) { return is_ndarray(h) && plain_layout(h); }

// A caller-supplied output: exact ndarray of the logits' type (`like`) with
// `shape`-matching checked by the caller, C-contiguous, aligned, writeable.
inline bool output(py::handle h, DType want) {
  return is_ndarray(h) && plain_layout(h) && writeable(h) && dtype_of(h, false) == want;
}

// A new C-contiguous array of the logits' dtype with the given dimensions.
inline py::array empty_like_dims(py::handle logits, const ssize_t* dims, int nd) {
  return py::array(py::reinterpret_borrow<py::dtype>(proxy(logits)->descr),
                   std::vector<ssize_t>(dims, dims + nd));
}

// (outer, classes, inner) of dims around axis ax.
inline void layout(const ssize_t* dims, int nd, int ax, std::int64_t& outer,
                   std::int64_t& classes, std::int64_t& inner) {
  outer = 1;
  for (int i = 0; i < ax; ++i) outer *= dims[i];
  classes = dims[ax];
  inner = 1;
  for (int i = ax + 1; i < nd; ++i) inner *= dims[i];
}


// The outputs of a fast call: the caller's `out` (loss, reduction 'none') and
// `grad_out` when acceptable, new arrays otherwise (allocated only after every
// check passed). False: decline (a bad output, `out` with a reduction, or an
// output overlapping an input).
struct Outputs {
  py::object loss, grad;
};

inline bool outputs(int mode, bool none, py::handle logits, DType dt, py::handle targets,
                    py::handle out, py::handle grad_out, const ssize_t* loss_dims, int loss_nd,
                    Outputs& o) {
  const bool want_loss = (mode & kLoss) != 0 && none, want_grad = (mode & kGrad) != 0;
  const auto* pz = proxy(logits);
  if (!out.is_none()) {
    if (!want_loss || !output(out, dt) || !has_dims(out, loss_dims, loss_nd)) return false;
    o.loss = py::reinterpret_borrow<py::object>(out);
  }
  if (want_grad && !grad_out.is_none()) {
    if (!output(grad_out, dt) || !has_dims(grad_out, pz->dimensions, pz->nd)) return false;
    o.grad = py::reinterpret_borrow<py::object>(grad_out);
  }
  if (find_overlap(bytes(logits), {bytes(targets)}, o.loss ? bytes(o.loss) : Bytes{},
                   o.grad ? bytes(o.grad) : Bytes{}) >= 0)
    return false;
  if (want_loss && !o.loss) o.loss = empty_like_dims(logits, loss_dims, loss_nd);
  if (want_grad && !o.grad) o.grad = empty_like_dims(logits, pz->dimensions, pz->nd);
  return true;
}

inline void* data_or_null(const py::object& a) { return a ? proxy(a)->data : nullptr; }

// The reduced loss as a NumPy scalar of the logits' dtype. A float32 result
// beyond FLT_MAX is inf (IEEE conversion), as in the Python layer.
// Calling numpy.float32(x) goes through NumPy's argument parsing and array
// conversion (~0.2 us, a fifth of a small call); the scalar is built directly
// instead: NumPy's float scalars are a PyObject header followed by the value
// (PyFloatScalarObject, PyDoubleScalarObject), allocated by their type's
// tp_alloc. A check on first use falls back to calling the type should a
// NumPy ever lay them out otherwise.
template <class V>
inline PyObject* new_scalar(PyTypeObject* type, V v) {
  PyObject* o = type->tp_alloc(type, 0);
  if (o == nullptr) throw py::error_already_set();
  std::memcpy(reinterpret_cast<char*>(o) + sizeof(PyObject), &v, sizeof(V));
  return o;
}

template <class V>
inline bool scalar_layout_ok(PyTypeObject* type) {
  if (type->tp_basicsize < static_cast<Py_ssize_t>(sizeof(PyObject) + sizeof(V)) ||
      type->tp_itemsize != 0)
    return false;
  const V probe = static_cast<V>(0.375);
  auto o = py::reinterpret_steal<py::object>(new_scalar(type, probe));
  const double back = PyFloat_AsDouble(o.ptr());
  if (back == -1.0 && PyErr_Occurred()) {
    PyErr_Clear();
    return false;
  }
  return back == 0.375;
}

inline py::object scalar(DType dt, double value) {
  static PyTypeObject* const f32 = reinterpret_cast<PyTypeObject*>(
      py::object(py::module_::import("numpy").attr("float32")).release().ptr());
  static PyTypeObject* const f64 = reinterpret_cast<PyTypeObject*>(
      py::object(py::module_::import("numpy").attr("float64")).release().ptr());
  static const bool direct = scalar_layout_ok<float>(f32) && scalar_layout_ok<double>(f64);
  if (dt == DType::f32) {
    // Magnitudes that round beyond FLT_MAX (from the midpoint between FLT_MAX
    // and 2^128 up) are made inf explicitly, as IEEE rounding gives them: a
    // conversion out of float's range is undefined in C++.
    constexpr float inf = std::numeric_limits<float>::infinity();
    const bool big = std::fabs(value) >= 0x1.ffffffp+127;
    const float v = big ? (value > 0.0 ? inf : -inf) : static_cast<float>(value);
    if (direct) return py::reinterpret_steal<py::object>(new_scalar(f32, v));
    return py::reinterpret_borrow<py::object>(reinterpret_cast<PyObject*>(f32))(
        py::float_(static_cast<double>(v)));
  }
  if (direct) return py::reinterpret_steal<py::object>(new_scalar(f64, value));
  return py::reinterpret_borrow<py::object>(reinterpret_cast<PyObject*>(f64))(py::float_(value));
}

// The checks every fast call starts with: the mode, the logits, the targets
// array, and the scalar options both families share (Call: SigmoidCall or
// SoftmaxCall).
template <class Call>
inline bool common(int mode, py::handle logits_arg, py::handle targets_arg,
                   py::handle gamma_arg, py::handle reduction_arg, py::handle normalizer_arg,
                   py::handle ignore_index_arg, Call& c) {
  if (mode < kLoss || mode > kBoth) return false;
  if (!logits(logits_arg, c.logits_dtype) || !input(targets_arg)) return false;
  c.reduction = reduction(reduction_arg);
  return c.reduction >= 0 && gamma(gamma_arg, c.gamma) &&
         normalizer(normalizer_arg, c.normalizer) && int64(ignore_index_arg, c.ignore_index);
}

// What the public function returns: the loss (mode kLoss), the gradient
// (kGrad) or (loss, gradient) (kBoth).
inline py::object result(int mode, bool none, DType dt, const CallStatus& st, const Outputs& o) {
  py::object loss = (mode & kLoss) == 0 ? py::none() : none ? o.loss : scalar(dt, st.loss);
  if (mode == kLoss) return loss;
  if (mode == kGrad) return o.grad;
  return py::make_tuple(loss, o.grad);
}

// Runs the kernel without the GIL and returns the public function's result,
// or None after a bad target (the Python layer then runs the call again and
// names it: the targets alone decide, so it finds the same one).
template <class Call, class Kernel>
inline py::object run(int mode, const Call& c, const Outputs& o, Kernel kernel) {
  CallStatus st;
  {
    py::gil_scoped_release release;
    st = kernel(c);
  }
  if (st.code != 0) return py::none();
  return result(mode, c.reduction == 0, c.logits_dtype, st, o);
}

// A fast entry point as a METH_FASTCALL function (mode, then N arguments):
// pybind11's dispatcher costs ~0.13 us a call, a tenth of a small call, where
// a plain vectorcall function costs a few tens of nanoseconds. A mode that is
// not a plain int declines like every other unusual argument.
template <class Fn, std::size_t... I>
inline py::object invoke(Fn fn, int mode, PyObject* const* args, std::index_sequence<I...>) {
  return fn(mode, py::handle(args[I + 1])...);
}

template <auto Fn, std::size_t N>
PyObject* fastcall(PyObject* /*module*/, PyObject* const* args, Py_ssize_t nargs) noexcept {
  if (nargs != static_cast<Py_ssize_t>(N + 1)) {
    PyErr_Format(PyExc_TypeError, "expected %zu positional arguments, got %zd", N + 1, nargs);
    return nullptr;
  }
  std::int64_t mode = 0;
  if (!int64(args[0], mode) || mode < kLoss || mode > kBoth) Py_RETURN_NONE;
  try {
    return invoke(Fn, static_cast<int>(mode), args, std::make_index_sequence<N>{}).release().ptr();
  } catch (py::error_already_set& e) {
    e.restore();
  } catch (const py::builtin_exception& e) {
    e.set_error();  // pybind11's value_error, type_error, ...: their Python types
  } catch (const std::bad_alloc&) {
    PyErr_NoMemory();
  } catch (const std::invalid_argument& e) {
    PyErr_SetString(PyExc_ValueError, e.what());  // as pybind11 translates it
  } catch (const std::exception& e) {
    PyErr_SetString(PyExc_RuntimeError, e.what());
  } catch (...) {
    PyErr_SetString(PyExc_RuntimeError, "unknown C++ exception");
  }
  return nullptr;
}

// Adds fast entry point Fn (mode, then N arguments) to module m as `name`.
template <auto Fn, std::size_t N>
inline void add_fastcall(py::module_& m, const char* name) {
  static PyMethodDef def = {  // one per entry point; outlives the module
      name, reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(&fastcall<Fn, N>)),
      METH_FASTCALL,
      "The public functions' fast path: their result, or None where the Python layer "
      "must check the arguments."};
  PyObject* f = PyCFunction_NewEx(&def, nullptr, m.attr("__name__").ptr());
  if (f == nullptr) throw py::error_already_set();
  m.add_object(def.ml_name, py::reinterpret_steal<py::object>(f));
}

}  // namespace fast
}  // namespace focal_native_bindings
