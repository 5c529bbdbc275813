// Thread-count settings of the CPU loops (csrc/cpu/parallel.h).
//
// Two sources, in order: an explicit count (hiper.set_num_threads(n), which hiper also calls
// for HIPER_NUM_THREADS at import), else torch.get_num_threads() whenever torch is imported,
// so that torch.set_num_threads and OMP_NUM_THREADS govern hiper too, else the core's
// default (the CPUs this process may run on). torch is looked up in sys.modules, never
// imported: the core does not depend on it. Following torch costs a dictionary lookup and a
// call per op, with the GIL held, before the op releases it (ReleaseGil).
#include "bindings/threads.h"

#include <string>

#include "cpu/parallel.h"

namespace hiper::bindings {
namespace py = pybind11;
namespace {

bool g_explicit = false;  // guarded by the GIL
// More threads than this is a mistake (a count of bytes or of rows), not a setting.
constexpr long kMaxThreads = 1024;

// torch.get_num_threads(), or 0 when torch is not (fully) imported.
int torch_threads() {
  PyObject* torch = PyDict_GetItemString(PyImport_GetModuleDict(), "torch");  // borrowed
  if (torch == nullptr) return 0;
  PyObject* result = PyObject_CallMethod(torch, "get_num_threads", nullptr);
  if (result == nullptr) {  // torch half-imported (or replaced): not ours to report
    PyErr_Clear();
    return 0;
  }
  const long n = PyLong_Check(result) ? PyLong_AsLong(result) : 0;
  Py_DECREF(result);
  if (PyErr_Occurred()) PyErr_Clear();
  return n > 0 ? static_cast<int>(n) : 0;
}

}  // namespace

void follow_torch_threads() {
  if (g_explicit) return;
  const int n = torch_threads();
  if (n > 0) cpu::set_num_threads(n);
}

void register_threads(py::module_& m) {
  using namespace pybind11::literals;
  m.def(
      "set_num_threads",
      [](py::object n) {
        if (n.is_none()) {  // back to the default: torch's count (set on the next op) or the CPUs'
          g_explicit = false;
          cpu::set_num_threads(cpu::default_num_threads());
          return;
        }
        const long value = n.cast<long>();
        if (value < 1 || value > kMaxThreads)
          throw py::value_error("n: expected a thread count in [1, " + std::to_string(kMaxThreads) + "] or None, got " +
                                std::to_string(value));
        g_explicit = true;
        cpu::set_num_threads(static_cast<int>(value));
      },
      "n"_a, "Threads of the CPU loops, the caller included; None: follow torch.get_num_threads().");
  m.def(
      "get_num_threads",
      [] {
        follow_torch_threads();
        return cpu::num_threads();
      },
      "Threads the CPU loops may use, the caller included.");
  m.def("loop_threads", &cpu::loop_threads, "n"_a, "work"_a,
        "Threads a loop over n items with `work` elements of work runs on (1 below the grain).");
  m.def("get_parallel_grain", &cpu::parallel_grain, "Work (elements) below which a loop runs on its caller alone.");
  m.def(
      "set_parallel_grain",
      [](py::object grain) {
        const index_t value = grain.is_none() ? cpu::kParallelGrain : grain.cast<index_t>();
        if (value < 0) throw py::value_error("grain: expected an amount of work >= 0 or None, got " +
                                             std::to_string(value));
        cpu::set_parallel_grain(value);
      },
      "grain"_a, "For tests and measurements: the work below which loops run serially (None: the default).");
}

}  // namespace hiper::bindings
