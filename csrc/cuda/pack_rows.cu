// CUDA launcher of the device trajectory buffer's pack (the twin of csrc/cpu/pack_rows.cpp):
// one warp per output row, running hiper/pack_rows.h's functions.
//
// For each side (prompt, response) of row i, lane k of the warp:
//   1. counts the kept tokens of source columns k, k + 32, ... (pack_count); warp sum;
//   2. places them 32 source columns a step: the ballot of the step's kept columns gives each
//      lane the rank of its token (tokens before the step + set bits below the lane), and
//      pack_tokens writes it (reads and writes of a step are contiguous);
//   3. pads positions k, k + 32, ... of the output (pack_pad on [j, j + 1)).
// Steps 2 and 3 write disjoint positions (tokens / padding), so they need no ordering.
// Pure data movement: deterministic.
#include "cuda/runtime.cuh"

namespace hiper::cuda {
namespace {

constexpr int kPackThreads = 256;  // 8 rows per block

__global__ void pack_rows_kernel(PackRowsParams p) {
  const index_t i = global_index() / kWarp;  // uniform across the warp
  const int lane = threadIdx.x % kWarp;
  if (i >= p.rows) return;  // whole warps leave together: the warp-wide calls below see 32 lanes
  const unsigned below = (1u << lane) - 1u;  // lanes under this one
  for (int side = 0; side < 2; ++side) {
    const PackSide s = pack_side(p, i, side == 0);
    index_t count = 0;
    for (index_t c = lane; c < s.cols; c += kWarp) count += pack_count(s, c, c + 1);
    count = warp_sum(count);
    index_t before = 0;  // kept tokens in the steps already done
    for (index_t c0 = 0; c0 < s.cols; c0 += kWarp) {  // uniform trip count
      const index_t c = c0 + lane;
      const bool kept = c < s.cols && s.mask[c] != 0;
      const unsigned ballot = __ballot_sync(kFullWarp, kept);
      if (kept) pack_tokens(s, count, c, c + 1, before + __popc(ballot & below));
      before += __popc(ballot);
    }
    for (index_t j = lane; j < s.width; j += kWarp) pack_pad(s, count, p.pad_id, j, j + 1);
  }
}

}  // namespace

void pack_rows(const PackRowsParams& p, stream_t stream) {
  if (p.rows == 0) return;
  pack_rows_kernel<<<blocks_for(p.rows * kWarp, kPackThreads), kPackThreads, 0, as_stream(stream)>>>(p);
  check_launch("pack_rows", "pack_rows_kernel");
}

}  // namespace hiper::cuda
