// CPU launchers: loops over trajectories or rows that call the shared per-item functions
// of csrc/include/hiper. csrc/cuda mirrors this file.
#pragma once

#include "hiper/consistency.h"
#include "hiper/flat.h"
#include "hiper/hae.h"
#include "hiper/normalize.h"
#include "hiper/row_scan.h"
#include "hiper/shaping.h"
#include "hiper/span_masker.h"
#include "hiper/token_outputs.h"

namespace hiper::cpu {

void shape_rewards(const ShapingParams& p);
void hae(const HAEParams& p);
void row_scan(const RowScanParams& p);
void token_outputs(const TokenOutputParams& p);
template <typename token_t>
void subgoal_changed(const ConsistencyParams<token_t>& p);
template <typename token_t>
void span_masks(const SpanMaskParams<token_t>& p);

// Mean and population std of x over rows with include[i] != 0 (include null: all rows).
Moments masked_moments(index_t n, const float* x, const flag_t* include);
// out[i] = (x[i] - mean) / (std + eps) where include[i] (or everywhere), x[i] elsewhere. out may alias x.
void normalize(index_t n, const float* x, const flag_t* include, const Moments& m, double eps, float* out);

// Flat baselines (hiper/flat.h).
void turn_gae(const TurnGAEParams& p);
void token_gae(const TokenGAEParams& p);
void episode_totals(const EpisodeTotalParams& p);
// Fills the per-group statistics itself (p.count / p.mean / p.std are ignored).
void group_normalize(GroupStatsParams p);
// out[i] = (x[i] - mean) * inv_scale where mask[i], 0 elsewhere (verl's masked_whiten).
void whiten(index_t n, const float* x, const flag_t* mask, double mean, double inv_scale, float* out);

}  // namespace hiper::cpu

namespace hiper::cpu {

// The per-turn core in one call: reward shaping, HAE recurrences and (optionally)
// normalisation of the three advantages over their credited turns.
struct PipelineParams {
  ShapingParams shaping;  // shaping.shaped: where the shaped rewards go (N,)
  HAEParams hae;          // hae.rewards is set to shaping.shaped
  bool normalize = false;
  double eps = 1e-8;
  // Turns each advantage lands on, for the statistics (null: every turn for low and term,
  // segment starts for high).
  const flag_t* credited_low = nullptr;
  const flag_t* credited_high = nullptr;
  const flag_t* credited_term = nullptr;
  const flag_t* is_boundary = nullptr;  // the layout's, used when credited_high is null
};

struct PipelineStats {
  Moments low, high, term;
};

PipelineStats hae_pipeline(PipelineParams p);

}  // namespace hiper::cpu
