// Host construction of the trajectory layout (see hiper/layout.h).
//
// The common case is O(N) with no comparison sort: trajectory ids that fit in a small
// range are bucketed through a direct table, and trajectories whose turns are a
// contiguous run (what a rollout produces) are placed by turn index directly. Other
// inputs (sparse ids, turn gaps) fall back to sorting, which is still correct.
#include <algorithm>
#include <stdexcept>
#include <string>

#include "hiper/layout.h"

namespace hiper {
namespace {

// Maps arbitrary int64 trajectory ids to dense ids 0..T-1 in ascending id order.
std::vector<index_t> dense_trajectory_ids(index_t n, const int64_t* ids, index_t* num_trajs) {
  std::vector<index_t> dense(n);
  int64_t lo = ids[0], hi = ids[0];
  for (index_t i = 1; i < n; ++i) {
    lo = std::min(lo, ids[i]);
    hi = std::max(hi, ids[i]);
  }
  // Range computed in unsigned arithmetic: hi - lo can overflow int64.
  const uint64_t range = static_cast<uint64_t>(hi) - static_cast<uint64_t>(lo);
  if (range < static_cast<uint64_t>(4 * n + 64)) {
    std::vector<index_t> table(range + 1, -1);
    for (index_t i = 0; i < n; ++i) table[static_cast<uint64_t>(ids[i]) - static_cast<uint64_t>(lo)] = 0;
    index_t next = 0;
    for (auto& slot : table)
      if (slot == 0) slot = next++;
    for (index_t i = 0; i < n; ++i) dense[i] = table[static_cast<uint64_t>(ids[i]) - static_cast<uint64_t>(lo)];
    *num_trajs = next;
  } else {
    std::vector<int64_t> uniq(ids, ids + n);
    std::sort(uniq.begin(), uniq.end());
    uniq.erase(std::unique(uniq.begin(), uniq.end()), uniq.end());
    for (index_t i = 0; i < n; ++i)
      dense[i] = std::lower_bound(uniq.begin(), uniq.end(), ids[i]) - uniq.begin();
    *num_trajs = static_cast<index_t>(uniq.size());
  }
  return dense;
}

[[noreturn]] void throw_duplicate_turn(int64_t traj_id, int64_t turn) {
  throw std::invalid_argument("turn_idx: trajectory " + std::to_string(traj_id) + " has turn " +
                              std::to_string(turn) + " more than once");
}

}  // namespace

Layout build_layout(index_t n, const int64_t* traj_ids, const int64_t* turn_idx,
                    const flag_t* is_new_subgoal) {
  Layout out;
  out.order.assign(n, -1);
  out.is_boundary.assign(n, 0);
  out.position.assign(n, 0);
  if (n == 0) {
    out.traj_offsets = {0};
    out.seg_offsets = {0};
    out.traj_seg_offsets = {0};
    return out;
  }
  for (index_t i = 0; i < n; ++i) {
    if (turn_idx[i] < 0)
      throw std::invalid_argument("turn_idx: must be non-negative, got " + std::to_string(turn_idx[i]) +
                                  " at row " + std::to_string(i));
  }

  index_t num_trajs = 0;
  const std::vector<index_t> traj = dense_trajectory_ids(n, traj_ids, &num_trajs);

  // Counts and turn range per trajectory.
  std::vector<index_t> count(num_trajs, 0);
  std::vector<int64_t> min_turn(num_trajs, INT64_MAX), max_turn(num_trajs, INT64_MIN);
  for (index_t i = 0; i < n; ++i) {
    const index_t t = traj[i];
    ++count[t];
    min_turn[t] = std::min(min_turn[t], turn_idx[i]);
    max_turn[t] = std::max(max_turn[t], turn_idx[i]);
  }
  out.traj_offsets.resize(num_trajs + 1);
  out.traj_offsets[0] = 0;
  for (index_t t = 0; t < num_trajs; ++t) out.traj_offsets[t + 1] = out.traj_offsets[t] + count[t];

  // Contiguous trajectories: place each row at offset + (turn - min). Others: append, sort below.
  std::vector<flag_t> contiguous(num_trajs);
  bool all_contiguous = true;
  for (index_t t = 0; t < num_trajs; ++t) {
    contiguous[t] = static_cast<uint64_t>(max_turn[t]) - static_cast<uint64_t>(min_turn[t]) + 1 ==
                    static_cast<uint64_t>(count[t]);
    all_contiguous = all_contiguous && contiguous[t];
  }
  std::vector<index_t> cursor;
  if (!all_contiguous) cursor.assign(out.traj_offsets.begin(), out.traj_offsets.end() - 1);
  for (index_t i = 0; i < n; ++i) {
    const index_t t = traj[i];
    index_t p;
    if (contiguous[t]) {
      p = out.traj_offsets[t] + (turn_idx[i] - min_turn[t]);
      if (out.order[p] >= 0) throw_duplicate_turn(traj_ids[i], turn_idx[i]);
    } else {
      p = cursor[t]++;
    }
    out.order[p] = i;
  }
  if (!all_contiguous) {
    for (index_t t = 0; t < num_trajs; ++t) {
      if (contiguous[t]) continue;
      auto first = out.order.begin() + out.traj_offsets[t];
      auto last = out.order.begin() + out.traj_offsets[t + 1];
      std::sort(first, last, [&](index_t a, index_t b) { return turn_idx[a] < turn_idx[b]; });
      for (auto it = first + 1; it < last; ++it)
        if (turn_idx[*it] == turn_idx[*(it - 1)]) throw_duplicate_turn(traj_ids[*it], turn_idx[*it]);
    }
  }

  // Segments: turn 0 of each trajectory and every switch turn start one.
  out.traj_seg_offsets.resize(num_trajs + 1);
  out.seg_offsets.reserve(n + 1);
  for (index_t t = 0; t < num_trajs; ++t) {
    out.traj_seg_offsets[t] = static_cast<index_t>(out.seg_offsets.size());
    for (index_t p = out.traj_offsets[t]; p < out.traj_offsets[t + 1]; ++p) {
      const index_t row = out.order[p];
      const index_t pos = p - out.traj_offsets[t];
      out.position[row] = pos;
      const bool boundary = pos == 0 || (is_new_subgoal != nullptr && is_new_subgoal[row] != 0);
      out.is_boundary[row] = boundary;
      if (boundary) out.seg_offsets.push_back(p);
    }
  }
  out.traj_seg_offsets[num_trajs] = static_cast<index_t>(out.seg_offsets.size());
  out.seg_offsets.push_back(n);
  return out;
}

}  // namespace hiper
