// The thread count of the core's CPU loops, as Python sets it (bindings/threads.cpp), and the
// GIL release every op binding makes around its call into the core.
#pragma once

#include <pybind11/pybind11.h>

namespace hiper::bindings {

// Unless hiper.set_num_threads (or HIPER_NUM_THREADS) fixed the count, sets the core's to
// torch.get_num_threads() when torch is imported. Needs the GIL.
void follow_torch_threads();

// Releases the GIL for a call into the core, after following torch's thread count while the
// GIL is still held (the core's loops cannot ask Python themselves).
class ReleaseGil {
 public:
  ReleaseGil() : followed_((follow_torch_threads(), true)) {}

 private:
  bool followed_;  // declared first: initialised before the GIL is released
  pybind11::gil_scoped_release release_;
};

}  // namespace hiper::bindings
