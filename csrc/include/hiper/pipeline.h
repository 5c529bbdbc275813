// The per-turn HAE core as one call: reward shaping, HAE recurrences and (optionally)
// normalisation of the three advantages over the turns they are credited to. The CPU and
// CUDA launchers take the same parameters.
#pragma once

#include "hiper/common.h"
#include "hiper/hae.h"
#include "hiper/normalize.h"
#include "hiper/shaping.h"

namespace hiper {

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

}  // namespace hiper
