// Per-row summaries of (N, L) token masks, read once before HAE.
//
// For each row: the number of valid response tokens, whether the action / subgoal / switch
// spans are non-empty (within the response), and the position at which each value head is
// read. A head is read at the first position of (value_mask && response_mask); when that is
// empty, at the last valid token, max(count - 1, 0), as the authors' `pick_value` does.
// Given the heads' (N, L) float32 outputs, the scan also reads the values at those positions.
#pragma once

#include "hiper/common.h"
#include "hiper/flag_words.h"

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

// First position where both masks are set, or -1. The CPU tests eight positions per word
// (flag_words.h); a CUDA thread scans blocks of 32 with a branch-free test and looks inside a
// block only on a hit. Spans usually sit early in a response, but an empty mask costs a full row.
HIPER_HOST_DEVICE index_t first_both(const flag_t* a, const flag_t* b, index_t n) {
#if defined(HIPER_FLAG_WORDS)
  return first_both_words(a, b, n);
#else
  constexpr index_t kBlock = 32;
  index_t j = 0;
  for (; j + kBlock <= n; j += kBlock) {
    int hit = 0;  // int, not bool: gcc vectorises integer reductions only
    for (index_t k = 0; k < kBlock; ++k) hit |= bit(a[j + k]) & bit(b[j + k]);
    if (hit != 0) break;
  }
  for (; j < n; ++j)
    if (bit(a[j]) & bit(b[j])) return j;
  return -1;
#endif
}

// Set flags in [0, n).
HIPER_HOST_DEVICE index_t count_set(const flag_t* p, index_t n) {
#if defined(HIPER_FLAG_WORDS)
  return count_flags(p, n);
#else
  int32_t count32 = 0;  // 32-bit accumulator vectorises better; L < 2^31 is checked at the boundary
  for (index_t j = 0; j < n; ++j) count32 += bit(p[j]);
  return count32;
#endif
}

// What positions [j0, j1) of one row contribute to its summary. The CPU scans a row as one
// stretch; a CUDA warp splits it into short stretches and combines theirs (any grouping and
// order gives the same result: counts add, first positions take the minimum).
inline constexpr index_t kNoPosition = INT64_MAX;

struct RowScanPartial {
  index_t count;     // valid response tokens
  index_t first[6];  // first j with (mask && response): action, subgoal, switch, value low, high, term
};

HIPER_HOST_DEVICE RowScanPartial row_scan_partial(const RowScanParams& p, index_t i, index_t j0, index_t j1) {
  const index_t base = i * p.length;
  const flag_t* resp = p.response_mask + base;
  RowScanPartial s;
  s.count = count_set(resp + j0, j1 - j0);
  auto first = [&](const flag_t* mask) {
    const index_t f = mask == nullptr ? -1 : first_both(mask + base + j0, resp + j0, j1 - j0);
    return f >= 0 ? j0 + f : kNoPosition;
  };
  s.first[0] = first(p.action_mask);
  s.first[1] = first(p.subgoal_mask);
  s.first[2] = first(p.switch_mask);
  // Value masks are scanned only for the heads whose position is wanted.
  for (int h = 0; h < 3; ++h) s.first[3 + h] = first(p.value_pos[h] != nullptr ? p.value_masks[h] : nullptr);
  return s;
}

HIPER_HOST_DEVICE RowScanPartial row_scan_combine(const RowScanPartial& a, const RowScanPartial& b) {
  RowScanPartial s;
  s.count = a.count + b.count;
  for (int m = 0; m < 6; ++m) s.first[m] = a.first[m] < b.first[m] ? a.first[m] : b.first[m];
  return s;
}

// Writes row i's outputs from the summary of the whole row.
HIPER_HOST_DEVICE void row_scan_finish(const RowScanParams& p, index_t i, const RowScanPartial& s) {
  const index_t count = s.count;
  p.response_length[i] = count;
  p.has_action[i] = p.action_mask == nullptr ? count > 0 : s.first[0] != kNoPosition;
  p.has_subgoal[i] = s.first[1] != kNoPosition;
  p.has_switch[i] = s.first[2] != kNoPosition;
  const index_t fallback = count > 0 ? count - 1 : 0;
  for (int h = 0; h < 3; ++h) {
    if (p.value_pos[h] == nullptr) continue;
    const index_t pos = s.first[3 + h] != kNoPosition ? s.first[3 + h] : fallback;
    p.value_pos[h][i] = pos;
    if (p.values[h] != nullptr && p.length > 0) p.value_at[h][i] = p.values[h][i * p.length + pos];
  }
}

HIPER_HOST_DEVICE void row_scan_row(const RowScanParams& p, index_t i) {
  row_scan_finish(p, i, row_scan_partial(p, i, 0, p.length));
}

}  // namespace hiper
