// Helpers shared by the binding translation units, and the register_*
// functions module.cpp calls.
#pragma once

#include "pybind.hpp"

#include <cstdint>
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

inline py::tuple status_tuple(const CallStatus& s) {
  return py::make_tuple(s.code, s.index, s.loss, s.count);
}

}  // namespace focal_native_bindings
