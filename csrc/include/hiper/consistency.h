// "Did the subgoal change since the previous turn?" for the keep-consistency penalty (docs/semantics.md §4.1.3).
//
// For the turn at position q >= 1 of a trajectory, compare the token ids under its subgoal
// mask with those of the turn at q - 1 (masks ANDed with the response mask). With
// requires_both, a turn where either sequence is empty is never flagged. Otherwise the flag
// is set when the lengths differ, the ids differ, or the current sequence is empty (as the
// authors' estimator does: an empty current subgoal always counts as changed). Turn 0 is
// never flagged.
#pragma once

#include "hiper/common.h"
#include "hiper/layout.h"
#include "hiper/row_scan.h"

namespace hiper {

template <typename token_t>
struct ConsistencyParams {
  LayoutView layout;
  index_t length = 0;
  const token_t* tokens = nullptr;        // (N, L) response token ids
  const flag_t* subgoal_mask = nullptr;   // (N, L)
  const flag_t* response_mask = nullptr;  // (N, L)
  bool requires_both = true;
  flag_t* changed = nullptr;              // (N,) output
};

// Advances j to the next position of a row where both masks hold; returns length if none.
// Inside a subgoal that is the very next position; past its end, first_both skips the rest
// of the row (eight positions per test on the CPU).
HIPER_HOST_DEVICE index_t next_masked(const flag_t* sub, const flag_t* resp, index_t j, index_t length) {
  if (j >= length) return length;
  if (bit(sub[j]) & bit(resp[j])) return j;
  const index_t found = first_both(sub + j, resp + j, length - j);
  return found < 0 ? length : j + found;
}

template <typename token_t>
HIPER_HOST_DEVICE bool subgoal_tokens_differ(const ConsistencyParams<token_t>& p, index_t cur, index_t prev,
                                             bool* cur_empty, bool* prev_empty) {
  const index_t L = p.length;
  const flag_t* sub_c = p.subgoal_mask + cur * L;
  const flag_t* res_c = p.response_mask + cur * L;
  const flag_t* sub_p = p.subgoal_mask + prev * L;
  const flag_t* res_p = p.response_mask + prev * L;
  const token_t* tok_c = p.tokens + cur * L;
  const token_t* tok_p = p.tokens + prev * L;
  index_t a = next_masked(sub_c, res_c, 0, L);
  index_t b = next_masked(sub_p, res_p, 0, L);
  *cur_empty = a == L;
  *prev_empty = b == L;
  // Walk both masked sequences in lockstep; they are equal iff they end together with equal ids.
  while (a < L && b < L) {
    if (tok_c[a] != tok_p[b]) return true;
    a = next_masked(sub_c, res_c, a + 1, L);
    b = next_masked(sub_p, res_p, b + 1, L);
  }
  return a < L || b < L;
}

// The flag of the turn at sorted position q. `opens` says q is its trajectory's first turn,
// which is never flagged; otherwise its predecessor is the turn at q - 1.
template <typename token_t>
HIPER_HOST_DEVICE void consistency_turn(const ConsistencyParams<token_t>& p, index_t q, bool opens) {
  const index_t cur = p.layout.order[q];
  if (opens) {
    p.changed[cur] = 0;
    return;
  }
  bool cur_empty = false, prev_empty = false;
  const bool differ = subgoal_tokens_differ(p, cur, p.layout.order[q - 1], &cur_empty, &prev_empty);
  bool flag = differ || cur_empty;
  if (p.requires_both && (cur_empty || prev_empty)) flag = false;
  p.changed[cur] = flag;
}

template <typename token_t>
HIPER_HOST_DEVICE void consistency_trajectory(const ConsistencyParams<token_t>& p, index_t traj) {
  const index_t begin = p.layout.traj_offsets[traj];
  const index_t end = p.layout.traj_offsets[traj + 1];
  for (index_t q = begin; q < end; ++q) consistency_turn(p, q, q == begin);
}

}  // namespace hiper
