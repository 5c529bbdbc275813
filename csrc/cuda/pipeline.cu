// The per-turn HAE core in one call on the device (the twin of csrc/cpu/pipeline.cpp):
// shaping, HAE, then the three advantages normalised together in one batch of reductions.
#include "cuda/runtime.cuh"

namespace hiper::cuda {

size_t pipeline_workspace_bytes() { return normalize_workspace_bytes(); }

void hae_pipeline(PipelineParams p, const index_t* num_trajs, void* workspace, size_t workspace_bytes,
                  stream_t stream) {
  shape_rewards(p.shaping, num_trajs, stream);
  p.hae.rewards = p.shaping.shaped;
  hae(p.hae, num_trajs, stream);
  if (!p.normalize) return;
  // In place, as on the CPU: low over its credited turns, high over segment starts unless
  // told otherwise, term only with a termination head.
  NormalizeBatch b;
  b.n = p.hae.layout.num_rows;
  auto add = [&b](float* x, const flag_t* include) {
    b.x[b.count] = x;
    b.include[b.count] = include;
    b.out[b.count] = x;
    ++b.count;
  };
  add(p.hae.adv_low, p.credited_low);
  add(p.hae.adv_high, p.credited_high != nullptr ? p.credited_high : p.is_boundary);
  if (p.hae.v_term != nullptr) add(p.hae.adv_term, p.credited_term);
  normalize(b, p.eps, workspace, workspace_bytes, stream);
}

}  // namespace hiper::cuda
