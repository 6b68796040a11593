// Helpers shared by the binding translation units, and the register_*
// functions module.cpp calls.
#pragma once

#include "pybind.hpp"

#include <cstdint>
#include <initializer_list>
#include <optional>
#include <stdexcept>
#include <string>

#include "dispatch.hpp"

namespace focal_native_bindings {

const KernelTable& kernels();

void register_sigmoid(py::module_& m);
void register_softmax(py::module_& m);

inline DType dtype_of(const py::array& a) {
  const char kind = a.dtype().kind();
  const auto size = a.itemsize();
  if (kind == 'f' && size == 4) return DType::f32;
  if (kind == 'f' && size == 8) return DType::f64;
  if (kind == 'u' || kind == 'b') {
    if (size == 1) return DType::u8;
    if (size == 2) return DType::u16;
    if (size == 4) return DType::u32;
    if (size == 8) return DType::u64;
  }
  if (kind == 'i') {
    if (size == 1) return DType::i8;
    if (size == 4) return DType::i32;
    if (size == 8) return DType::i64;
  }
  return DType::unsupported;
}

// The data of a C-contiguous array of `expected` elements. The Python layer
// guarantees all this; the checks here keep a direct caller of _core from
// reading or writing out of bounds.
inline const void* checked_data(const py::array& a, const char* name, std::int64_t expected) {
  if (!(a.flags() & py::array::c_style))
    throw std::invalid_argument(std::string(name) + " must be C-contiguous");
  if (static_cast<std::int64_t>(a.size()) != expected)
    throw std::invalid_argument(std::string(name) + " has " + std::to_string(a.size()) +
                                " elements, expected " + std::to_string(expected));
  return a.data();
}

inline void* checked_mutable_data(py::array& a, const char* name, std::int64_t expected) {
  checked_data(a, name, expected);
  if (!a.writeable()) throw std::invalid_argument(std::string(name) + " is read-only");
  return a.mutable_data();
}

// Outputs overlapping inputs, found here rather than in Python (where
// numpy.may_share_memory costs ~0.25 us per pair, the whole budget of a
// small call). Reported as status kOverlap with `index`:
//   0: the loss output overlaps an input (logits, targets, alpha, grad_output);
//   1: the gradient output overlaps the logits without being exactly them;
//   2: the gradient output overlaps another input or the loss output.
// The gradient may be written over exactly the logits array (same start,
// same size: both are C-contiguous with the logits' dtype and size).
inline constexpr int kOverlap = 100;

struct Bytes {
  const char* lo = nullptr;
  const char* hi = nullptr;
};

inline Bytes bytes_of(const py::array& a) {
  const char* p = static_cast<const char*>(a.data());
  return {p, p + a.nbytes()};
}

inline bool overlaps(const Bytes& a, const Bytes& b) {
  return a.lo != a.hi && b.lo != b.hi && a.lo < b.hi && b.lo < a.hi;
}

// -1 when nothing overlaps, else the index described above. An absent
// output is an empty range (it overlaps nothing).
inline int find_overlap(const Bytes& logits, std::initializer_list<Bytes> other_inputs,
                        const Bytes& loss_out, const Bytes& grad_out) {
  for (const Bytes& b : other_inputs)
    if (overlaps(loss_out, b)) return 0;
  if (overlaps(loss_out, logits)) return 0;
  if (overlaps(grad_out, logits) && !(grad_out.lo == logits.lo && grad_out.hi == logits.hi))
    return 1;
  for (const Bytes& b : other_inputs)
    if (overlaps(grad_out, b)) return 2;
  if (overlaps(grad_out, loss_out)) return 2;
  return -1;
}

inline int find_overlap(const Bytes& logits, std::initializer_list<Bytes> other_inputs,
                        const std::optional<py::array>& loss_out,
                        const std::optional<py::array>& grad_out) {
  return find_overlap(logits, other_inputs, loss_out ? bytes_of(*loss_out) : Bytes{},
                      grad_out ? bytes_of(*grad_out) : Bytes{});
}

inline py::tuple status_tuple(const CallStatus& s) {
  return py::make_tuple(s.code, s.index, s.loss, s.count);
}

}  // namespace focal_native_bindings
