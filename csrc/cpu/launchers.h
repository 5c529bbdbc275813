// CPU launchers: loops over trajectories or rows that call the shared per-item functions
// of csrc/include/hiper. csrc/cuda mirrors this file.
#pragma once

#include "hiper/consistency.h"
#include "hiper/flat.h"
#include "hiper/hae.h"
#include "hiper/normalize.h"
#include "hiper/pack_rows.h"
#include "hiper/pipeline.h"
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
// The device buffer's pack on host rows (tests: the twin of the CUDA launcher).
void pack_rows(const PackRowsParams& p);
// The CUDA kernel's row algorithm on the host (tests only; one thread, no text copy).
template <typename token_t>
void span_masks_by_tokens(const SpanMaskParams<token_t>& p);

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

// The per-turn core in one call (hiper/pipeline.h); returns the normalisation statistics.
PipelineStats hae_pipeline(PipelineParams p);

}  // namespace hiper::cpu
