// Arguments of the CUDA bindings. Device arrays arrive from Python as integer pointers
// (tensor.data_ptr(), 0 for an absent array) together with the device index and the
// caller's current stream; hiper/ops/_cuda.py has checked each tensor's dtype, shape,
// contiguity and device beforehand, as arrays.h does for host arrays. Every binding takes
// keyword arguments only, so Python cannot pass pointers in the wrong order.
#pragma once

#if defined(HIPER_WITH_CUDA)

#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <tuple>
#include <utility>

#include "cuda/launchers.h"

namespace hiper::bindings {

namespace py = pybind11;
using ptr_t = std::uintptr_t;

template <typename T>
const T* in(ptr_t p) {
  return reinterpret_cast<const T*>(p);
}

template <typename T>
T* out(ptr_t p) {
  return reinterpret_cast<T*>(p);
}

// A device layout as hiper/ops/layout.py's CudaTrajectoryLayout.handle passes it:
// (n, order, traj_offsets, seg_offsets, traj_seg_offsets, meta, position, is_boundary).
using LayoutHandle = std::tuple<index_t, ptr_t, ptr_t, ptr_t, ptr_t, ptr_t, ptr_t, ptr_t>;

struct DeviceLayout {
  LayoutView view;  // counts are the upper bound n: the real ones are on the device
  const index_t* num_trajs;
  const index_t* position;
  const flag_t* is_boundary;
};

inline DeviceLayout device_layout(const LayoutHandle& h) {
  DeviceLayout d;
  d.view.num_rows = d.view.num_trajs = d.view.num_segments = std::get<0>(h);
  d.view.order = in<index_t>(std::get<1>(h));
  d.view.traj_offsets = in<index_t>(std::get<2>(h));
  d.view.seg_offsets = in<index_t>(std::get<3>(h));
  d.view.traj_seg_offsets = in<index_t>(std::get<4>(h));
  d.num_trajs = in<index_t>(std::get<5>(h));  // meta[0]
  d.position = in<index_t>(std::get<6>(h));
  d.is_boundary = in<flag_t>(std::get<7>(h));
  return d;
}

// Runs `fn` without the GIL with `device` current. `fn` only enqueues work on a stream or
// sizes a workspace: nothing waits for the device.
template <typename F>
auto on_device(int device, F&& fn) {
  py::gil_scoped_release release;
  cuda::DeviceScope scope(device);
  return std::forward<F>(fn)();
}

}  // namespace hiper::bindings

#endif  // HIPER_WITH_CUDA
