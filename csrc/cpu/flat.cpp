// CPU launchers of the flat estimators (hiper/flat.h): one trajectory or row per iteration
// for the recurrences; the group statistics are sequential scatter passes in a fixed row
// order, so they are deterministic (a group's rows are scattered over the batch, and a
// turn costs a few nanoseconds: threads would not pay before ~10^6 rows).
#include <cmath>
#include <vector>

#include "cpu/launchers.h"
#include "cpu/parallel.h"

namespace hiper::cpu {

void turn_gae(const TurnGAEParams& p) {
  parallel_for(p.layout.num_trajs, p.layout.num_rows * 2, [&](index_t t) { turn_gae_trajectory<double>(p, t); });
}

void token_gae(const TokenGAEParams& p) {
  parallel_for(p.num_rows, p.num_rows * p.length, [&](index_t r) { token_gae_row<double>(p, r); });
}

void episode_totals(const EpisodeTotalParams& p) {
  parallel_for(p.layout.num_trajs, p.layout.num_rows, [&](index_t t) { episode_total_trajectory(p, t); });
}

void group_normalize(GroupStatsParams p) {
  std::vector<index_t> count(p.num_groups, 0);
  std::vector<double> sum(p.num_groups, 0.0), sq(p.num_groups, 0.0);
  for (index_t i = 0; i < p.num_rows; ++i) {
    if (p.samples != nullptr && p.samples[i] == 0) continue;
    count[p.groups[i]] += 1;
    sum[p.groups[i]] += p.scores[i];
  }
  std::vector<double> mean(p.num_groups, 0.0), std(p.num_groups, 0.0);
  for (index_t g = 0; g < p.num_groups; ++g)
    if (count[g] > 0) mean[g] = sum[g] / static_cast<double>(count[g]);
  // Second pass for the variance: the one-pass formula loses digits when |mean| >> std.
  for (index_t i = 0; i < p.num_rows; ++i) {
    if (p.samples != nullptr && p.samples[i] == 0) continue;
    const double d = p.scores[i] - mean[p.groups[i]];
    sq[p.groups[i]] += d * d;
  }
  for (index_t g = 0; g < p.num_groups; ++g)
    if (count[g] > 1) std[g] = std::sqrt(sq[g] / static_cast<double>(count[g] - 1));
  p.count = count.data();
  p.mean = mean.data();
  p.std = std.data();
  for (index_t i = 0; i < p.num_rows; ++i) p.advantages[i] = group_advantage(p, i);
}

void whiten(index_t n, const float* x, const flag_t* mask, double mean, double inv_scale, float* out) {
  for (index_t i = 0; i < n; ++i) {
    out[i] = mask[i] != 0 ? normalize_value(x[i], mean, inv_scale) : 0.0f;
  }
}

}  // namespace hiper::cpu
