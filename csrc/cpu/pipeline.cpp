// The per-turn HAE core as one call (see launchers.h): one boundary crossing from Python
// instead of five, which matters when the whole core takes tens of microseconds.
#include "cpu/launchers.h"

namespace hiper::cpu {

PipelineStats hae_pipeline(PipelineParams p) {
  shape_rewards(p.shaping);
  p.hae.rewards = p.shaping.shaped;
  hae(p.hae);
  PipelineStats stats;
  if (!p.normalize) return stats;
  const index_t n = p.hae.layout.num_rows;
  const flag_t* high_rows = p.credited_high != nullptr ? p.credited_high : p.is_boundary;
  stats.low = masked_moments(n, p.hae.adv_low, p.credited_low);
  stats.high = masked_moments(n, p.hae.adv_high, high_rows);
  if (stats.low.count > 0) normalize(n, p.hae.adv_low, p.credited_low, stats.low, p.eps, p.hae.adv_low);
  if (stats.high.count > 0) normalize(n, p.hae.adv_high, high_rows, stats.high, p.eps, p.hae.adv_high);
  if (p.hae.v_term != nullptr) {
    stats.term = masked_moments(n, p.hae.adv_term, p.credited_term);
    if (stats.term.count > 0) normalize(n, p.hae.adv_term, p.credited_term, stats.term, p.eps, p.hae.adv_term);
  }
  return stats;
}

}  // namespace hiper::cpu
