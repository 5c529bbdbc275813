// Argument checking for the bindings: every array that reaches the core is checked here
// for type, dtype, contiguity and shape, and errors name the argument. The core itself
// trusts these checks, so nothing it is handed can make it read or write out of bounds.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cmath>
#include <string>
#include <vector>

#include "hiper/common.h"

namespace hiper::bindings {

namespace py = pybind11;

enum class Kind { kFloat32, kInt64, kFlag, kToken };

inline const char* kind_name(Kind k) {
  switch (k) {
    case Kind::kFloat32: return "float32";
    case Kind::kInt64: return "int64";
    case Kind::kFlag: return "bool or uint8";
    case Kind::kToken: return "int64 or int32";
  }
  return "?";
}

inline bool kind_matches(Kind k, const py::dtype& dt) {
  const char c = dt.kind();
  const auto size = dt.itemsize();
  switch (k) {
    case Kind::kFloat32: return c == 'f' && size == 4;
    case Kind::kInt64: return c == 'i' && size == 8;
    case Kind::kFlag: return (c == 'b' || c == 'u') && size == 1;
    case Kind::kToken: return c == 'i' && (size == 8 || size == 4);
  }
  return false;
}

inline std::string shape_str(const std::vector<py::ssize_t>& shape) {
  std::string s = "(";
  for (size_t d = 0; d < shape.size(); ++d) s += (d ? ", " : "") + std::to_string(shape[d]);
  return s + (shape.size() == 1 ? ",)" : ")");
}

// An absent optional array: a null handle, so in_ptr / out_ptr give nullptr. (A default
// constructed py::array is a real, empty array, not a null one.)
inline py::array absent() { return py::reinterpret_steal<py::array>(py::handle()); }

// Returns the array behind `obj` after checking it; `obj` None is allowed when optional.
// `shape` entries of -1 accept any size. Writable is required for outputs.
inline py::array checked_array(const py::object& obj, const char* name, Kind kind,
                               const std::vector<py::ssize_t>& shape, bool optional = false,
                               bool writable = false) {
  if (obj.is_none()) {
    if (optional) return absent();
    throw py::type_error(std::string(name) + ": expected an array, got None");
  }
  if (!py::isinstance<py::array>(obj))
    throw py::type_error(std::string(name) + ": expected a numpy array (use the hiper Python API for torch tensors), got " +
                         std::string(py::str(py::type::of(obj))));
  py::array arr = py::reinterpret_borrow<py::array>(obj);
  if (!kind_matches(kind, arr.dtype()))
    throw py::type_error(std::string(name) + ": expected dtype " + kind_name(kind) + ", got " +
                         std::string(py::str(arr.dtype())));
  std::vector<py::ssize_t> got(arr.shape(), arr.shape() + arr.ndim());
  bool ok = got.size() == shape.size();
  for (size_t d = 0; ok && d < shape.size(); ++d) ok = shape[d] < 0 || shape[d] == got[d];
  if (!ok) throw py::value_error(std::string(name) + ": expected shape " + shape_str(shape) + ", got " + shape_str(got));
  if (!(arr.flags() & py::array::c_style))
    throw py::value_error(std::string(name) + ": must be C-contiguous");
  if (writable && !arr.writeable()) throw py::value_error(std::string(name) + ": output array is read-only");
  return arr;
}

template <typename T>
const T* in_ptr(const py::array& a) {
  return a.ptr() != nullptr ? static_cast<const T*>(a.data()) : nullptr;
}

template <typename T>
T* out_ptr(py::array& a) {
  return a.ptr() != nullptr ? static_cast<T*>(a.mutable_data()) : nullptr;
}

inline void check_finite(const py::array& a, const char* name) {
  if (a.ptr() == nullptr) return;
  const float* x = static_cast<const float*>(a.data());
  const auto n = a.size();
  // A float is inf or NaN iff its exponent bits are all ones. Test that with an integer
  // OR-reduction (vectorises; a float reduction would not without -ffast-math) and search
  // for the culprit only when it fails.
  const uint32_t* bits = static_cast<const uint32_t*>(a.data());
  uint32_t bad = 0;
  for (py::ssize_t i = 0; i < n; ++i) bad |= static_cast<uint32_t>((bits[i] & 0x7f800000u) == 0x7f800000u);
  if (bad == 0) return;
  for (py::ssize_t i = 0; i < n; ++i)
    if (!std::isfinite(x[i]))
      throw py::value_error(std::string(name) + ": must be finite, got " + std::to_string(x[i]) + " at index " +
                            std::to_string(i));
}

}  // namespace hiper::bindings
