// CUDA launchers for reward shaping, HAE and the subgoal-consistency flags: the same
// per-trajectory / per-turn functions the CPU launchers (csrc/cpu/hae.cpp) loop over.
//
// Shaping and HAE run one thread per trajectory: a trajectory is a short chain of dependent
// multiply-adds (tens of turns), too short to pay for a parallel scan, and trajectories are
// independent. They accumulate in double exactly as on the CPU; with contraction into FMAs
// disabled for this build (CMakeLists.txt), each thread performs the CPU's sequence of IEEE
// operations, so the results are bit-identical to the CPU path. (Double costs nothing
// measurable here: the kernels are bound by memory latency, not arithmetic.)
//
// The number of trajectories is known on the device only, so the grids cover N rows (an
// upper bound) and threads past the count return at once.
#include "cuda/runtime.cuh"

namespace hiper::cuda {
namespace {

// Small blocks spread the few hundred or thousand trajectories over many multiprocessors.
constexpr int kTrajThreads = 64;
constexpr int kTurnThreads = 128;

__global__ void shape_kernel(ShapingParams p, const index_t* num_trajs) {
  const index_t t = global_index();
  if (t >= *num_trajs) return;
  shape_trajectory<double>(p, t);
}

__global__ void hae_kernel(HAEParams p, const index_t* num_trajs) {
  const index_t t = global_index();
  if (t >= *num_trajs) return;
  hae_trajectory<double>(p, t);
}

template <typename token_t>
__global__ void consistency_kernel(ConsistencyParams<token_t> p, const index_t* position) {
  const index_t q = global_index();
  if (q >= p.layout.num_rows) return;
  consistency_turn(p, q, position[p.layout.order[q]] == 0);
}

}  // namespace

void shape_rewards(const ShapingParams& p, const index_t* num_trajs, stream_t stream) {
  const index_t n = p.layout.num_rows;
  if (n == 0) return;
  shape_kernel<<<blocks_for(n, kTrajThreads), kTrajThreads, 0, as_stream(stream)>>>(p, num_trajs);
  check_launch("shape_rewards", "shape_kernel");
}

void hae(const HAEParams& p, const index_t* num_trajs, stream_t stream) {
  const index_t n = p.layout.num_rows;
  if (n == 0) return;
  hae_kernel<<<blocks_for(n, kTrajThreads), kTrajThreads, 0, as_stream(stream)>>>(p, num_trajs);
  check_launch("hae", "hae_kernel");
}

template <typename token_t>
void subgoal_changed(const ConsistencyParams<token_t>& p, const index_t* position, stream_t stream) {
  const index_t n = p.layout.num_rows;
  if (n == 0) return;
  consistency_kernel<token_t><<<blocks_for(n, kTurnThreads), kTurnThreads, 0, as_stream(stream)>>>(p, position);
  check_launch("subgoal_changed", "consistency_kernel");
}
template void subgoal_changed<int64_t>(const ConsistencyParams<int64_t>&, const index_t*, stream_t);
template void subgoal_changed<int32_t>(const ConsistencyParams<int32_t>&, const index_t*, stream_t);

}  // namespace hiper::cuda
