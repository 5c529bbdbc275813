// The trajectory layout built on the device (see launchers.h for the output contract).
//
// Two stable radix sorts give the (trajectory, turn) order: by turn, then by trajectory id
// (LSD radix sort is stable, so the second keeps the first's turn order; ties between equal
// (trajectory, turn) pairs keep row order). One inclusive scan then numbers the trajectories
// and segments each sorted position belongs to, and one pass scatters the CSR offsets. The
// result equals the CPU layout's: trajectories by ascending id, turns ascending.
//
// Nothing here waits for the device. Negative and repeated turns are recorded in `meta`
// (the lowest offending row / sorted position, so the record is deterministic) for the
// caller to read when it chooses.
#include <cub/device/device_radix_sort.cuh>
#include <cub/device/device_scan.cuh>

#include "cuda/runtime.cuh"

namespace hiper::cuda {
namespace {

constexpr int kThreads = 256;
constexpr const char* kOp = "build_layout";

// While the build runs, an error slot of `meta` holds this until an error lowers it (atomicMin);
// every byte is 0x7f, so one cudaMemsetAsync sets it. The last pass turns it into -1.
constexpr int64_t kPending = 0x7f7f7f7f7f7f7f7f;

// Running counts along the sorted rows: trajectories and segments opened so far, and the
// position where the current trajectory opened (a running maximum: openings increase).
struct Ranks {
  index_t trajs;
  index_t segs;
  index_t traj_start;
};

struct CombineRanks {
  __host__ __device__ Ranks operator()(const Ranks& a, const Ranks& b) const {
    return {a.trajs + b.trajs, a.segs + b.segs, a.traj_start > b.traj_start ? a.traj_start : b.traj_start};
  }
};

__device__ void record_first(int64_t* slot, index_t at) {
  atomicMin(reinterpret_cast<long long*>(slot), static_cast<long long>(at));
}

// Keys and values of the first sort (turn index, row); records the first negative turn.
__global__ void init_sort_kernel(index_t n, const int64_t* turn_idx, int64_t* keys, index_t* rows, int64_t* meta) {
  const index_t i = global_index();
  if (i >= n) return;
  const int64_t turn = turn_idx[i];
  keys[i] = turn;
  rows[i] = i;
  if (turn < 0) record_first(meta + 2, i);
}

// Keys of the second sort: the trajectory id of each row, in the turn-sorted row order.
__global__ void gather_traj_kernel(index_t n, const int64_t* traj_ids, const index_t* rows, int64_t* keys) {
  const index_t i = global_index();
  if (i >= n) return;
  keys[i] = traj_ids[rows[i]];
}

// Does sorted position p open a trajectory / a segment. Records the first position whose
// turn repeats its predecessor's within one trajectory.
__global__ void mark_kernel(index_t n, const int64_t* sorted_traj, const index_t* order, const int64_t* turn_idx,
                            const flag_t* is_new_subgoal, flag_t* is_boundary, Ranks* ranks, int64_t* meta) {
  const index_t p = global_index();
  if (p >= n) return;
  const index_t row = order[p];
  const bool opens_traj = p == 0 || sorted_traj[p] != sorted_traj[p - 1];
  if (!opens_traj && turn_idx[row] == turn_idx[order[p - 1]]) record_first(meta + 4, p);
  const bool opens_seg = opens_traj || (is_new_subgoal != nullptr && is_new_subgoal[row] != 0);
  is_boundary[row] = opens_seg;
  ranks[p] = Ranks{opens_traj ? 1 : 0, opens_seg ? 1 : 0, opens_traj ? p : 0};
}

// CSR offsets and positions from the scanned ranks. The last position also writes the
// closing offsets, the counts, and the details of any recorded error.
__global__ void scatter_kernel(index_t n, const Ranks* ranks, const int64_t* traj_ids, const int64_t* turn_idx,
                               DeviceLayoutOutputs out) {
  const index_t p = global_index();
  if (p >= n) return;
  const Ranks r = ranks[p];
  const index_t row = out.order[p];
  const index_t t = r.trajs - 1, k = r.segs - 1;
  out.position[row] = p - r.traj_start;
  if (r.traj_start == p) {
    out.traj_offsets[t] = p;
    out.traj_seg_offsets[t] = k;
  }
  if (out.is_boundary[row] != 0) out.seg_offsets[k] = p;
  if (p != n - 1) return;
  out.traj_offsets[r.trajs] = n;
  out.seg_offsets[r.segs] = n;
  out.traj_seg_offsets[r.trajs] = r.segs;
  int64_t* meta = out.meta;
  meta[0] = r.trajs;
  meta[1] = r.segs;
  if (meta[2] == kPending) {
    meta[2] = -1;
    meta[3] = 0;
  } else {
    meta[3] = turn_idx[meta[2]];
  }
  if (meta[4] == kPending) {
    meta[4] = -1;
    meta[5] = meta[6] = 0;
  } else {
    const index_t dup = out.order[meta[4]];
    meta[5] = traj_ids[dup];
    meta[6] = turn_idx[dup];
  }
}

// Temporaries of one build, carved in a fixed order (see Workspace).
struct Scratch {
  cub::DoubleBuffer<int64_t> keys;
  cub::DoubleBuffer<index_t> rows;
  Ranks* ranks_in;
  Ranks* ranks_out;
  void* cub_temp;
  size_t sort_bytes;
  size_t scan_bytes;
};

Scratch carve(Workspace& ws, index_t n, index_t* order) {
  Scratch s;
  s.keys = cub::DoubleBuffer<int64_t>(ws.take<int64_t>(n), ws.take<int64_t>(n));
  s.rows = cub::DoubleBuffer<index_t>(order, ws.take<index_t>(n));
  s.ranks_in = ws.take<Ranks>(n);
  s.ranks_out = ws.take<Ranks>(n);
  // Size queries only (null temp storage): they read no data.
  s.sort_bytes = s.scan_bytes = 0;
  check(cub::DeviceRadixSort::SortPairs(nullptr, s.sort_bytes, s.keys, s.rows, n), kOp, "radix sort size query");
  check(cub::DeviceScan::InclusiveScan(nullptr, s.scan_bytes, s.ranks_in, s.ranks_out, CombineRanks{}, n), kOp,
        "scan size query");
  s.cub_temp = ws.take<char>(s.sort_bytes > s.scan_bytes ? s.sort_bytes : s.scan_bytes);
  return s;
}

void build_empty(const DeviceLayoutOutputs& out, cudaStream_t stream) {
  // One closing offset each, zero counts, no errors (-1: every byte 0xff).
  for (index_t* offsets : {out.traj_offsets, out.seg_offsets, out.traj_seg_offsets})
    check(cudaMemsetAsync(offsets, 0, sizeof(index_t), stream), kOp, "cudaMemsetAsync");
  check(cudaMemsetAsync(out.meta, 0, 2 * sizeof(int64_t), stream), kOp, "cudaMemsetAsync");
  check(cudaMemsetAsync(out.meta + 2, 0xff, (kLayoutMetaSize - 2) * sizeof(int64_t), stream), kOp, "cudaMemsetAsync");
}

}  // namespace

size_t layout_workspace_bytes(index_t n) {
  Workspace ws = Workspace::measure();
  carve(ws, n, nullptr);
  return ws.used();
}

void build_layout(index_t n, const int64_t* traj_ids, const int64_t* turn_idx, const flag_t* is_new_subgoal,
                  const DeviceLayoutOutputs& out, void* workspace, size_t workspace_bytes, stream_t stream_handle) {
  const cudaStream_t stream = as_stream(stream_handle);
  if (n == 0) {
    build_empty(out, stream);
    return;
  }
  Workspace ws(workspace, workspace_bytes, kOp);
  Scratch s = carve(ws, n, out.order);
  const unsigned blocks = blocks_for(n, kThreads);

  check(cudaMemsetAsync(out.meta, 0x7f, kLayoutMetaSize * sizeof(int64_t), stream), kOp, "cudaMemsetAsync");
  init_sort_kernel<<<blocks, kThreads, 0, stream>>>(n, turn_idx, s.keys.Current(), s.rows.Current(), out.meta);
  check_launch(kOp, "init_sort_kernel");
  check(cub::DeviceRadixSort::SortPairs(s.cub_temp, s.sort_bytes, s.keys, s.rows, n, 0, 64, stream), kOp,
        "radix sort by turn");
  gather_traj_kernel<<<blocks, kThreads, 0, stream>>>(n, traj_ids, s.rows.Current(), s.keys.Current());
  check_launch(kOp, "gather_traj_kernel");
  check(cub::DeviceRadixSort::SortPairs(s.cub_temp, s.sort_bytes, s.keys, s.rows, n, 0, 64, stream), kOp,
        "radix sort by trajectory");
  if (s.rows.Current() != out.order)
    check(cudaMemcpyAsync(out.order, s.rows.Current(), n * sizeof(index_t), cudaMemcpyDeviceToDevice, stream), kOp,
          "cudaMemcpyAsync");

  mark_kernel<<<blocks, kThreads, 0, stream>>>(n, s.keys.Current(), out.order, turn_idx, is_new_subgoal,
                                               out.is_boundary, s.ranks_in, out.meta);
  check_launch(kOp, "mark_kernel");
  check(cub::DeviceScan::InclusiveScan(s.cub_temp, s.scan_bytes, s.ranks_in, s.ranks_out, CombineRanks{}, n, stream),
        kOp, "scan");
  scatter_kernel<<<blocks, kThreads, 0, stream>>>(n, s.ranks_out, traj_ids, turn_idx, out);
  check_launch(kOp, "scatter_kernel");
}

}  // namespace hiper::cuda
