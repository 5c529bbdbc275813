// hiper._C: the pybind11 module. Thin: check arguments (arrays.h), release the GIL, call
// a launcher. Torch never appears here; the Python layer hands over numpy views of
// tensors, so data is shared, not copied. The cuda_* functions (CUDA builds only) take
// device pointers of tensors the Python layer has checked and the caller's stream.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "bindings/arrays.h"
#include "bindings/device.h"
#include "bindings/ops.h"

namespace py = pybind11;

PYBIND11_MODULE(_C, m) {
  m.doc() = "hiper's compiled core (C++ / CUDA). Use the Python API in `hiper`; these functions expect numpy arrays.";
#ifdef HIPER_VERSION_INFO
  m.attr("__version__") = HIPER_VERSION_INFO;
#endif
  m.def("cuda_compiled", &hiper::bindings::cuda_compiled, "Whether this build contains the CUDA backend.");
  m.def("cuda_device_count", &hiper::bindings::cuda_device_count,
        "Number of usable CUDA devices (0 without a CUDA build, a driver or a device).");
  hiper::bindings::register_layout(m);
  hiper::bindings::register_hae_ops(m);
  hiper::bindings::register_flat_ops(m);
  hiper::bindings::register_token_ops(m);
  hiper::bindings::register_factorize(m);
  hiper::bindings::register_masker(m);
  hiper::bindings::register_buffer(m);
  hiper::bindings::register_threads(m);
  hiper::bindings::register_cuda_layout(m);
  hiper::bindings::register_cuda_hae_ops(m);
  hiper::bindings::register_cuda_token_ops(m);
  hiper::bindings::register_cuda_masker(m);
  hiper::bindings::register_cuda_buffer(m);
}
