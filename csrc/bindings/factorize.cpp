// factorize(ids) -> int64 codes: equal ids get equal codes, in order of first appearance.
//
// Trainers identify trajectories by arbitrary hashable objects (uuid strings in verl).
// Sorting them (np.unique) costs Python comparisons; one hash-table pass here costs a
// hash per row. Lives in the bindings because it is about Python objects, not the core.
#include <Python.h>

#include <unordered_map>
#include <utility>
#include <vector>

#include "bindings/arrays.h"
#include "bindings/ops.h"

namespace hiper::bindings {
namespace {

py::array_t<int64_t> factorize_py(const py::object& ids) {
  py::object seq = py::reinterpret_steal<py::object>(PySequence_Fast(ids.ptr(), "ids: expected a sequence"));
  if (!seq) throw py::error_already_set();
  const Py_ssize_t n = PySequence_Fast_GET_SIZE(seq.ptr());
  PyObject** items = PySequence_Fast_ITEMS(seq.ptr());
  py::array_t<int64_t> codes(n);
  int64_t* out = codes.mutable_data();
  // hash -> (object, code) pairs; collisions resolved with ==.
  std::unordered_map<Py_hash_t, std::vector<std::pair<PyObject*, int64_t>>> table;
  table.reserve(static_cast<size_t>(n));
  int64_t next = 0;
  for (Py_ssize_t i = 0; i < n; ++i) {
    PyObject* item = items[i];
    const Py_hash_t h = PyObject_Hash(item);
    if (h == -1 && PyErr_Occurred()) throw py::error_already_set();
    auto& bucket = table[h];
    int64_t code = -1;
    for (const auto& [obj, c] : bucket) {
      const int eq = PyObject_RichCompareBool(obj, item, Py_EQ);
      if (eq < 0) throw py::error_already_set();
      if (eq) {
        code = c;
        break;
      }
    }
    if (code < 0) {
      code = next++;
      bucket.emplace_back(item, code);  // borrowed: `seq` keeps every item alive
    }
    out[i] = code;
  }
  return codes;
}

}  // namespace

void register_factorize(py::module_& m) {
  m.def("factorize", &factorize_py, py::arg("ids"),
        "Dense int64 codes for a sequence of hashable ids, in order of first appearance.");
}

}  // namespace hiper::bindings
