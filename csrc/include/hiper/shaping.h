// Per-turn reward shaping for HAE (docs/semantics.md §4.1), one trajectory at a time.
//
//   r_t = reward_t
//       + keep penalty        on KEEP turns (switch flag unset, turn 0 included)
//       - c_inv * max(0, 1 - is_action_valid_t)
//       + keep_consistency    on KEEP turns t >= 1 whose subgoal changed since turn t-1
//
// Keep-penalty modes: FIXED adds keep_penalty to every KEEP turn; NORMALIZED spreads
// keep_penalty * (KEEP ratio) evenly over the KEEP turns of a trajectory with more than one
// turn, i.e. keep_penalty / T per KEEP turn.
#pragma once

#include "hiper/common.h"
#include "hiper/layout.h"

namespace hiper {

enum class KeepPenaltyMode : int { kFixed = 0, kNormalized = 1 };

struct ShapingParams {
  LayoutView layout;
  const float* rewards = nullptr;           // (N,)
  const flag_t* is_new_subgoal = nullptr;   // (N,) raw switch flags; null: every turn KEEP
  const float* is_action_valid = nullptr;   // (N,) null: all valid
  const flag_t* subgoal_changed = nullptr;  // (N,) null: never changed
  double keep_penalty = 0.0;
  KeepPenaltyMode keep_penalty_mode = KeepPenaltyMode::kFixed;
  double invalid_action_penalty_coef = 0.0;
  double keep_consistency_penalty = 0.0;
  float* shaped = nullptr;                  // (N,) output; may alias `rewards`
};

HIPER_HOST_DEVICE bool is_keep_turn(const ShapingParams& p, index_t row) {
  return p.is_new_subgoal == nullptr || p.is_new_subgoal[row] == 0;
}

// Shapes every turn of trajectory `traj`. Accumulates in double (CPU) / acc_t.
template <typename acc_t>
HIPER_HOST_DEVICE void shape_trajectory(const ShapingParams& p, index_t traj) {
  const index_t begin = p.layout.traj_offsets[traj];
  const index_t end = p.layout.traj_offsets[traj + 1];
  const index_t num_turns = end - begin;

  acc_t keep_bonus = 0;
  if (p.keep_penalty != 0.0) {
    if (p.keep_penalty_mode == KeepPenaltyMode::kFixed) {
      keep_bonus = static_cast<acc_t>(p.keep_penalty);
    } else if (num_turns > 1) {
      index_t num_keep = 0;
      for (index_t q = begin; q < end; ++q) num_keep += is_keep_turn(p, p.layout.order[q]);
      // keep_penalty * (num_keep / T) / num_keep, written as the reference writes it.
      if (num_keep > 0)
        keep_bonus = static_cast<acc_t>(p.keep_penalty * (static_cast<double>(num_keep) / num_turns) / num_keep);
    }
  }

  for (index_t q = begin; q < end; ++q) {
    const index_t row = p.layout.order[q];
    const bool keep = is_keep_turn(p, row);
    acc_t r = static_cast<acc_t>(p.rewards[row]);
    if (keep) r += keep_bonus;
    if (p.is_action_valid != nullptr && p.invalid_action_penalty_coef != 0.0) {
      const acc_t invalid = static_cast<acc_t>(1) - static_cast<acc_t>(p.is_action_valid[row]);
      if (invalid > 0) r -= static_cast<acc_t>(p.invalid_action_penalty_coef) * invalid;
    }
    if (keep && q > begin && p.subgoal_changed != nullptr && p.subgoal_changed[row] != 0)
      r += static_cast<acc_t>(p.keep_consistency_penalty);
    p.shaped[row] = static_cast<float>(r);
  }
}

}  // namespace hiper
