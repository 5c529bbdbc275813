// CUDA binding of the trajectory layout (see csrc/cuda/launchers.h for its outputs). The
// Python side (hiper/ops/layout.py, CudaTrajectoryLayout) owns the device tensors.
#include "bindings/ops.h"

#if defined(HIPER_WITH_CUDA)
#include "bindings/cuda_args.h"

namespace hiper::bindings {

void register_cuda_layout(py::module_& m) {
  using namespace pybind11::literals;
  m.attr("cuda_layout_meta_size") = cuda::kLayoutMetaSize;
  m.def(
      "cuda_layout_workspace_bytes",
      [](index_t n, int device) { return on_device(device, [&] { return cuda::layout_workspace_bytes(n); }); },
      py::kw_only(), "n"_a, "device"_a, "Device workspace (bytes) cuda_build_layout needs for n rows.");
  m.def(
      "cuda_build_layout",
      [](index_t n, ptr_t traj_ids, ptr_t turn_idx, ptr_t is_new_subgoal, ptr_t order, ptr_t traj_offsets,
         ptr_t seg_offsets, ptr_t traj_seg_offsets, ptr_t is_boundary, ptr_t position, ptr_t meta, ptr_t workspace,
         size_t workspace_bytes, int device, ptr_t stream) {
        cuda::DeviceLayoutOutputs o;
        o.order = out<index_t>(order);
        o.traj_offsets = out<index_t>(traj_offsets);
        o.seg_offsets = out<index_t>(seg_offsets);
        o.traj_seg_offsets = out<index_t>(traj_seg_offsets);
        o.is_boundary = out<flag_t>(is_boundary);
        o.position = out<index_t>(position);
        o.meta = out<int64_t>(meta);
        on_device(device, [&] {
          cuda::build_layout(n, in<int64_t>(traj_ids), in<int64_t>(turn_idx), in<flag_t>(is_new_subgoal), o,
                             reinterpret_cast<void*>(workspace), workspace_bytes, stream);
        });
      },
      py::kw_only(), "n"_a, "traj_ids"_a, "turn_idx"_a, "is_new_subgoal"_a, "order"_a, "traj_offsets"_a,
      "seg_offsets"_a, "traj_seg_offsets"_a, "is_boundary"_a, "position"_a, "meta"_a, "workspace"_a,
      "workspace_bytes"_a, "device"_a, "stream"_a,
      "Enqueue the layout build on `stream`: CSR arrays sized n + 1, counts and error record in `meta`.");
}

}  // namespace hiper::bindings

#else

namespace hiper::bindings {
void register_cuda_layout(pybind11::module_&) {}
}  // namespace hiper::bindings

#endif
