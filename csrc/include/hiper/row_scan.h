// Per-row summaries of (N, L) token masks, read once before HAE.
//
// For each row: the number of valid response tokens, whether the action / subgoal / switch
// spans are non-empty (within the response), and the position at which each value head is
// read. A head is read at the first position of (value_mask && response_mask); when that is
// empty, at the last valid token, max(count - 1, 0), as the authors' `pick_value` does.
// Given the heads' (N, L) float32 outputs, the scan also reads the values at those positions.
#pragma once

#include "hiper/common.h"

namespace hiper {

struct RowScanParams {
  index_t num_rows = 0;
  index_t length = 0;
  const flag_t* response_mask = nullptr;  // (N, L)
  const flag_t* action_mask = nullptr;    // (N, L) or null: the whole response
  const flag_t* subgoal_mask = nullptr;   // (N, L) or null
  const flag_t* switch_mask = nullptr;    // (N, L) or null
  const flag_t* value_masks[3] = {nullptr, nullptr, nullptr};  // low, high, term; null: skipped
  const float* values[3] = {nullptr, nullptr, nullptr};         // (N, L) head outputs; null: not read
  // (N,) outputs.
  index_t* response_length = nullptr;
  flag_t* has_action = nullptr;
  flag_t* has_subgoal = nullptr;
  flag_t* has_switch = nullptr;
  index_t* value_pos[3] = {nullptr, nullptr, nullptr};
  float* value_at[3] = {nullptr, nullptr, nullptr};  // (N,) values[h][i, value_pos[h][i]]
};

// First position where both masks are set, or -1. Scans blocks of 32 with a branch-free
// (vectorisable) test and looks inside a block only on a hit: spans usually sit early in a
// response, but an empty mask costs a full row.
HIPER_HOST_DEVICE index_t first_both(const flag_t* a, const flag_t* b, index_t n) {
  constexpr index_t kBlock = 32;
  index_t j = 0;
  for (; j + kBlock <= n; j += kBlock) {
    int hit = 0;  // int, not bool: gcc vectorises integer reductions only
    for (index_t k = 0; k < kBlock; ++k) hit |= static_cast<int>(a[j + k] != 0) & static_cast<int>(b[j + k] != 0);
    if (hit != 0) break;
  }
  for (; j < n; ++j)
    if ((a[j] != 0) & (b[j] != 0)) return j;
  return -1;
}

HIPER_HOST_DEVICE bool any_both(const flag_t* a, const flag_t* b, index_t n) { return first_both(a, b, n) >= 0; }

HIPER_HOST_DEVICE void row_scan_row(const RowScanParams& p, index_t i) {
  const index_t base = i * p.length;
  const flag_t* resp = p.response_mask + base;
  int32_t count32 = 0;  // 32-bit accumulator vectorises better; L < 2^31 is checked at the boundary
  for (index_t j = 0; j < p.length; ++j) count32 += static_cast<int32_t>(resp[j] != 0);
  const index_t count = count32;
  p.response_length[i] = count;
  p.has_action[i] = p.action_mask == nullptr ? count > 0 : any_both(p.action_mask + base, resp, p.length);
  p.has_subgoal[i] = p.subgoal_mask != nullptr && any_both(p.subgoal_mask + base, resp, p.length);
  p.has_switch[i] = p.switch_mask != nullptr && any_both(p.switch_mask + base, resp, p.length);
  const index_t fallback = count > 0 ? count - 1 : 0;
  for (int h = 0; h < 3; ++h) {
    if (p.value_pos[h] == nullptr) continue;
    const index_t first = p.value_masks[h] == nullptr ? -1 : first_both(p.value_masks[h] + base, resp, p.length);
    const index_t pos = first >= 0 ? first : fallback;
    p.value_pos[h][i] = pos;
    if (p.values[h] != nullptr && p.length > 0) p.value_at[h][i] = p.values[h][base + pos];
  }
}

}  // namespace hiper
