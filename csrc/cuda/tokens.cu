// CUDA launchers for the (N, L) passes (the twins of csrc/cpu/tokens.cpp). Both are bound by
// memory bandwidth, so what matters is that a warp touches contiguous bytes.
//
// row_scan: one warp per row. Lane k scans the 16-byte stretches k, k + 32, ... of the row
// with the CPU's row_scan_partial, so one step of the warp reads 512 contiguous bytes of
// each mask; the lanes' partials are combined with shuffles (counts add, first positions
// take the minimum: the same result as the CPU's single stretch) and lane 0 writes the row's
// outputs with the CPU's row_scan_finish.
//
// token_outputs: one thread per token, running the CPU's token_outputs_span on the one
// position [j, j + 1): consecutive threads write consecutive elements of every output, so
// each warp-wide store is one contiguous 128-byte (float) or 32-byte (mask) piece.
#include "cuda/runtime.cuh"

namespace hiper::cuda {
namespace {

constexpr int kRowScanThreads = 256;  // 8 rows per block
constexpr index_t kStretch = 16;      // bytes of a row per lane and step
constexpr int kTokenThreads = 256;
constexpr unsigned kMaxGridY = 65535;

__global__ void row_scan_kernel(RowScanParams p) {
  const index_t i = global_index() / kWarp;  // uniform across the warp
  const int lane = threadIdx.x % kWarp;
  if (i >= p.num_rows) return;  // whole warps leave together, so the shuffles below see 32 lanes
  RowScanPartial acc;
  acc.count = 0;
  for (int m = 0; m < 6; ++m) acc.first[m] = kNoPosition;
  for (index_t j0 = lane * kStretch; j0 < p.length; j0 += kWarp * kStretch) {
    const index_t j1 = j0 + kStretch < p.length ? j0 + kStretch : p.length;
    acc = row_scan_combine(acc, row_scan_partial(p, i, j0, j1));
  }
  acc.count = warp_sum(acc.count);
  for (int m = 0; m < 6; ++m) acc.first[m] = warp_min(acc.first[m]);
  if (lane == 0) row_scan_finish(p, i, acc);
}

// Rows past gridDim.y (more than 65535) loop; positions past the row length return.
__global__ void token_outputs_kernel(TokenOutputParams p, const flag_t* zero_row) {
  const index_t j = global_index();
  if (j >= p.length) return;
  for (index_t i = blockIdx.y; i < p.num_rows; i += gridDim.y) token_outputs_span(p, zero_row, i, j, j + 1);
}

}  // namespace

void row_scan(const RowScanParams& p, stream_t stream) {
  if (p.num_rows == 0) return;
  const unsigned blocks = blocks_for(p.num_rows * kWarp, kRowScanThreads);
  row_scan_kernel<<<blocks, kRowScanThreads, 0, as_stream(stream)>>>(p);
  check_launch("row_scan", "row_scan_kernel");
}

size_t token_outputs_workspace_bytes(index_t length) {
  Workspace ws = Workspace::measure();
  ws.take<flag_t>(length);
  return ws.used();
}

void token_outputs(const TokenOutputParams& p, void* workspace, size_t workspace_bytes, stream_t stream_handle) {
  if (p.num_rows == 0 || p.length == 0) return;
  const cudaStream_t stream = as_stream(stream_handle);
  Workspace ws(workspace, workspace_bytes, "token_outputs");
  flag_t* zero_row = ws.take<flag_t>(p.length);
  check(cudaMemsetAsync(zero_row, 0, p.length, stream), "token_outputs", "cudaMemsetAsync");
  const unsigned rows = p.num_rows < kMaxGridY ? static_cast<unsigned>(p.num_rows) : kMaxGridY;
  const dim3 grid(blocks_for(p.length, kTokenThreads), rows);
  token_outputs_kernel<<<grid, kTokenThreads, 0, stream>>>(p, zero_row);
  check_launch("token_outputs", "token_outputs_kernel");
}

}  // namespace hiper::cuda
