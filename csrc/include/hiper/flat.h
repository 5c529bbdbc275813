// Flat (non-hierarchical) advantage estimators, the baselines HiPER is compared with
// (docs/semantics.md §8), on the same trajectory layout as HAE:
//
//   turn-level GAE    one recursion over the turns of a trajectory
//                       A_t = r_t + g (1-d_t) V_{t+1} - V_t + g lam (1-d_t) A_{t+1},  R_t = A_t + V_t
//                     with V_{T} = V_{T-1} after a truncated last turn when bootstrap_truncated, else 0.
//                     Without values (V = 0, lam = 1) R_t is the discounted return-to-go, which
//                     is GiGPO's step return.
//   token-level GAE   verl's estimator: the same recursion over the tokens of one response row,
//                     skipping tokens outside the response mask (their rewards and values are
//                     never read), no bootstrap past the row's last token.
//   group statistics  GRPO / RLOO / GiGPO: per-group mean and (unbiased) std of a per-row score
//                     over the rows flagged as samples, then a per-row centring or z-score
//                     (a single-sample group's statistics: see SingleSample).
//   episode totals    each row receives the sum of its trajectory's rewards (the "episode"
//                     reward manager that scores every turn of a baseline with the episode
//                     reward).
#pragma once

#include <cmath>

#include "hiper/common.h"
#include "hiper/layout.h"

namespace hiper {

struct TurnGAEParams {
  LayoutView layout;
  const float* rewards = nullptr;  // (N,)
  const flag_t* dones = nullptr;   // (N,)
  const float* values = nullptr;   // (N,) V at the start of each turn; null: all zero
  double gamma = 1.0;
  double lam = 1.0;
  bool bootstrap_truncated = false;
  float* advantages = nullptr;  // (N,)
  float* returns = nullptr;     // (N,)
};

template <typename acc_t>
HIPER_HOST_DEVICE void turn_gae_trajectory(const TurnGAEParams& p, index_t traj) {
  const LayoutView& lay = p.layout;
  const index_t first = lay.traj_offsets[traj];
  const index_t last = lay.traj_offsets[traj + 1] - 1;
  const acc_t g = static_cast<acc_t>(p.gamma);
  const acc_t g_lam = static_cast<acc_t>(p.gamma * p.lam);
  acc_t next_value = 0;
  if (p.bootstrap_truncated && p.values != nullptr && last >= first)
    next_value = static_cast<acc_t>(p.values[lay.order[last]]);  // zeroed below when the last turn is done
  acc_t next_adv = 0;
  for (index_t q = last; q >= first; --q) {
    const index_t row = lay.order[q];
    const acc_t r = static_cast<acc_t>(p.rewards[row]);
    const acc_t v = p.values != nullptr ? static_cast<acc_t>(p.values[row]) : acc_t(0);
    const acc_t not_done = p.dones[row] != 0 ? 0 : 1;
    const acc_t adv = r + g * not_done * next_value - v + g_lam * not_done * next_adv;
    p.advantages[row] = static_cast<float>(adv);
    p.returns[row] = static_cast<float>(adv + v);
    next_value = v;
    next_adv = adv;
  }
}

struct TokenGAEParams {
  index_t num_rows = 0;
  index_t length = 0;                    // L
  const float* rewards = nullptr;        // (N, L) token rewards
  const float* values = nullptr;         // (N, L) token values
  const flag_t* response_mask = nullptr; // (N, L)
  double gamma = 1.0;
  double lam = 1.0;
  float* advantages = nullptr;  // (N, L); 0 outside the mask
  float* returns = nullptr;     // (N, L); 0 outside the mask
};

template <typename acc_t>
HIPER_HOST_DEVICE void token_gae_row(const TokenGAEParams& p, index_t row) {
  const index_t base = row * p.length;
  const acc_t g = static_cast<acc_t>(p.gamma);
  const acc_t g_lam = static_cast<acc_t>(p.gamma * p.lam);
  acc_t next_value = 0;
  acc_t next_adv = 0;
  for (index_t t = p.length - 1; t >= 0; --t) {
    const index_t i = base + t;
    if (p.response_mask[i] == 0) {
      p.advantages[i] = 0.0f;
      p.returns[i] = 0.0f;
      continue;
    }
    const acc_t v = static_cast<acc_t>(p.values[i]);
    const acc_t adv = static_cast<acc_t>(p.rewards[i]) + g * next_value - v + g_lam * next_adv;
    p.advantages[i] = static_cast<float>(adv);
    p.returns[i] = static_cast<float>(adv + v);
    next_value = v;
    next_adv = adv;
  }
}

struct EpisodeTotalParams {
  LayoutView layout;
  const float* rewards = nullptr;  // (N,)
  float* totals = nullptr;         // (N,) every row: its trajectory's reward sum
};

HIPER_HOST_DEVICE void episode_total_trajectory(const EpisodeTotalParams& p, index_t traj) {
  const LayoutView& lay = p.layout;
  double total = 0.0;
  for (index_t q = lay.traj_offsets[traj]; q < lay.traj_offsets[traj + 1]; ++q) total += p.rewards[lay.order[q]];
  for (index_t q = lay.traj_offsets[traj]; q < lay.traj_offsets[traj + 1]; ++q)
    p.totals[lay.order[q]] = static_cast<float>(total);
}

// How group_normalize turns a score into an advantage, given its group's statistics over
// the n sample rows (mean, unbiased std):
//   kZScore  (GRPO, GiGPO mean_std_norm)  (x - mean) / (std + eps)
//   kCenter  (GiGPO mean_norm, Dr. GRPO)  x - mean
//   kLeaveOneOut (RLOO)                   n/(n-1) (x - mean), i.e. x minus the mean of the
//            other samples
enum class GroupMode { kZScore, kCenter, kLeaveOneOut };

// What a group with a single sample uses as its statistics (std 1 either way):
//   kMeanZero  mean 0: the score is kept (x / (1 + eps) under kZScore), as verl's GRPO and
//              RLOO and GiGPO's episode groups (episode_norm_reward) do
//   kOwnScore  mean = that sample's score: its advantage is 0, as GiGPO's step groups
//              (step_norm_reward) do
enum class SingleSample { kMeanZero, kOwnScore };

struct GroupStatsParams {
  index_t num_rows = 0;
  index_t num_groups = 0;
  const float* scores = nullptr;   // (N,)
  const int64_t* groups = nullptr; // (N,) dense ids in [0, num_groups)
  const flag_t* samples = nullptr; // (N,) rows that enter the statistics; null: all
  GroupMode mode = GroupMode::kZScore;
  SingleSample single_sample = SingleSample::kMeanZero;
  double eps = 1e-6;
  // Per-group scratch (num_groups each), filled by the launcher; mean is 0 for a group
  // without samples.
  index_t* count = nullptr;
  double* mean = nullptr;
  double* std = nullptr;
  float* advantages = nullptr;  // (N,)
};

HIPER_HOST_DEVICE float group_advantage(const GroupStatsParams& p, index_t row) {
  const index_t g = p.groups[row];
  const index_t n = p.count[g];
  const double x = static_cast<double>(p.scores[row]);
  const bool single = n <= 1;
  const double mean = single && p.single_sample == SingleSample::kMeanZero ? 0.0 : p.mean[g];
  switch (p.mode) {
    case GroupMode::kZScore: {
      const double std = single ? 1.0 : p.std[g];
      return static_cast<float>((x - mean) / (std + p.eps));
    }
    case GroupMode::kCenter:
      return static_cast<float>(x - mean);
    case GroupMode::kLeaveOneOut:
      return single ? static_cast<float>(x - mean) : static_cast<float>((x - mean) * n / (n - 1.0));
  }
  return 0.0f;
}

}  // namespace hiper
