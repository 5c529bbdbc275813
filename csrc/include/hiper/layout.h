// Trajectory layout: per-turn rows, in any order, grouped into trajectories and segments.
//
// Rows are (trajectory, turn) pairs as trainers hand them around. The layout sorts them
// once into CSR form and every other op walks it:
//
//   order[p]               row index of the p-th turn in (trajectory, turn) order
//   traj_offsets[t]        first position of trajectory t in `order` (size T + 1)
//   seg_offsets[k]         first position of segment k in `order`     (size S + 1)
//   traj_seg_offsets[t]    first segment of trajectory t              (size T + 1)
//
// A segment is a maximal run of turns that keep the same subgoal: turn 0 of every
// trajectory and every turn whose switch flag is set start one (docs/semantics.md §3).
#pragma once

#include <vector>

#include "hiper/common.h"

namespace hiper {

// Read-only view of a layout, as the kernels consume it.
struct LayoutView {
  index_t num_rows = 0;
  index_t num_trajs = 0;
  index_t num_segments = 0;
  const index_t* order = nullptr;
  const index_t* traj_offsets = nullptr;
  const index_t* seg_offsets = nullptr;
  const index_t* traj_seg_offsets = nullptr;
};

// Owning layout built on the host.
struct Layout {
  std::vector<index_t> order;
  std::vector<index_t> traj_offsets;
  std::vector<index_t> seg_offsets;
  std::vector<index_t> traj_seg_offsets;
  std::vector<flag_t> is_boundary;  // per row: the row starts a segment
  std::vector<index_t> position;    // per row: its turn position within its trajectory (0-based)

  LayoutView view() const {
    LayoutView v;
    v.num_rows = static_cast<index_t>(order.size());
    v.num_trajs = static_cast<index_t>(traj_offsets.size()) - 1;
    v.num_segments = static_cast<index_t>(seg_offsets.size()) - 1;
    v.order = order.data();
    v.traj_offsets = traj_offsets.data();
    v.seg_offsets = seg_offsets.data();
    v.traj_seg_offsets = traj_seg_offsets.data();
    return v;
  }
};

// Builds the layout. `traj_ids` are arbitrary int64 ids, `turn_idx` non-negative and
// unique within a trajectory (gaps allowed), `is_new_subgoal` may be null (no switches).
// Throws std::invalid_argument naming the argument on negative or duplicate turns.
Layout build_layout(index_t num_rows, const int64_t* traj_ids, const int64_t* turn_idx,
                    const flag_t* is_new_subgoal);

}  // namespace hiper
