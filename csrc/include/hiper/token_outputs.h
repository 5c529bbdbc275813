// Token-level HAE outputs (SPEC §4.6, §4.8): per-turn scalars broadcast under span masks.
//
// For row i and response position j (every mask below is first ANDed with response_mask):
//   lo   = action_mask                     (whole response when action_mask is null)
//   hi   = boundary_i && (high_on_subgoal && subgoal_mask || high_on_switch && switch_mask)
//   term = term_on_switch && switch_mask
//   advantages_{low,high,term} = A_{low,high,term}(i) where its mask holds, else 0
//   advantages = advantages_low + advantages_high + advantages_term
//   returns_{low,high,term}    = R_{low,high,term}(i) where value_mask_{low,high,term} holds
//   loss_mask = lo || hi || term
//
// Each output pointer may be null (not written). Each row is written in one visit.
#pragma once

#include "hiper/common.h"

namespace hiper {

struct TokenOutputParams {
  index_t num_rows = 0;
  index_t length = 0;  // L, the response length of the (N, L) tensors
  // (N, L) inputs, one byte per element.
  const flag_t* response_mask = nullptr;
  const flag_t* action_mask = nullptr;   // null: the whole response
  const flag_t* subgoal_mask = nullptr;  // null: empty
  const flag_t* switch_mask = nullptr;   // null: empty
  const flag_t* value_mask_low = nullptr;   // null: no return written
  const flag_t* value_mask_high = nullptr;
  const flag_t* value_mask_term = nullptr;
  // (N,) inputs.
  const flag_t* is_boundary = nullptr;
  const float* adv_low = nullptr;
  const float* adv_high = nullptr;
  const float* adv_term = nullptr;
  const float* ret_low = nullptr;
  const float* ret_high = nullptr;
  const float* ret_term = nullptr;
  bool high_on_subgoal = true;
  bool high_on_switch = false;
  bool term_on_switch = true;
  // (N, L) outputs; any may be null.
  float* advantages = nullptr;
  float* advantages_low = nullptr;
  float* advantages_high = nullptr;
  float* advantages_term = nullptr;
  float* returns_low = nullptr;
  float* returns_high = nullptr;
  float* returns_term = nullptr;
  flag_t* lo_mask = nullptr;
  flag_t* hi_mask = nullptr;
  flag_t* term_mask = nullptr;
  flag_t* loss_mask = nullptr;
};

// One row's inputs, with absent masks replaced by a row of zeros (or, for the action span,
// by the response mask) so the per-token code below has no null checks.
struct TokenRow {
  const flag_t* resp;
  const flag_t* act;
  const flag_t* sub;
  const flag_t* sw;
  const flag_t* vml;
  const flag_t* vmh;
  const flag_t* vmt;
  int hi_sub, hi_sw, te_sw;  // 0/1
};

HIPER_HOST_DEVICE TokenRow token_row(const TokenOutputParams& p, const flag_t* zero_row, index_t i) {
  const index_t base = i * p.length;
  const bool boundary = p.is_boundary[i] != 0;
  TokenRow r;
  r.resp = p.response_mask + base;
  r.act = p.action_mask ? p.action_mask + base : r.resp;
  r.sub = p.subgoal_mask ? p.subgoal_mask + base : zero_row;
  r.sw = p.switch_mask ? p.switch_mask + base : zero_row;
  r.vml = p.value_mask_low ? p.value_mask_low + base : zero_row;
  r.vmh = p.value_mask_high ? p.value_mask_high + base : zero_row;
  r.vmt = p.value_mask_term ? p.value_mask_term + base : zero_row;
  r.hi_sub = boundary && p.high_on_subgoal;
  r.hi_sw = boundary && p.high_on_switch;
  r.te_sw = p.term_on_switch;
  return r;
}

// Per-token span flags. Bitwise (not short-circuit) operators keep the loops branch-free,
// so the compiler vectorises them.
// Flags are 0/1 integers rather than bool: gcc does not vectorise bool-to-float conversions.
HIPER_HOST_DEVICE int on(const flag_t* m, index_t j) { return m[j] != 0; }
HIPER_HOST_DEVICE int lo_at(const TokenRow& r, index_t j) { return on(r.resp, j) & on(r.act, j); }
HIPER_HOST_DEVICE int hi_at(const TokenRow& r, index_t j) {
  return on(r.resp, j) & ((on(r.sub, j) & r.hi_sub) | (on(r.sw, j) & r.hi_sw));
}
HIPER_HOST_DEVICE int te_at(const TokenRow& r, index_t j) { return on(r.resp, j) & on(r.sw, j) & r.te_sw; }

// Writes positions [j0, j1) of row i: one short loop per requested output, each reading
// the row's masks from L1. Multiplying by the flag (not selecting) matches the reference
// arithmetic exactly, including signed zeros.
HIPER_HOST_DEVICE void token_outputs_span(const TokenOutputParams& p, const flag_t* zero_row, index_t i, index_t j0,
                                          index_t j1) {
  const TokenRow r = token_row(p, zero_row, i);
  const index_t base = i * p.length;
  const float a_lo = p.adv_low[i], a_hi = p.adv_high[i], a_te = p.adv_term[i];
  if (p.advantages) {
    float* o = p.advantages + base;
    for (index_t j = j0; j < j1; ++j)
      o[j] = a_lo * static_cast<float>(lo_at(r, j)) + a_hi * static_cast<float>(hi_at(r, j)) +
             a_te * static_cast<float>(te_at(r, j));
  }
  if (p.advantages_low) {
    float* o = p.advantages_low + base;
    for (index_t j = j0; j < j1; ++j) o[j] = a_lo * static_cast<float>(lo_at(r, j));
  }
  if (p.advantages_high) {
    float* o = p.advantages_high + base;
    for (index_t j = j0; j < j1; ++j) o[j] = a_hi * static_cast<float>(hi_at(r, j));
  }
  if (p.advantages_term) {
    float* o = p.advantages_term + base;
    for (index_t j = j0; j < j1; ++j) o[j] = a_te * static_cast<float>(te_at(r, j));
  }
  if (p.returns_low) {
    float* o = p.returns_low + base;
    const float v = p.ret_low[i];
    for (index_t j = j0; j < j1; ++j) o[j] = v * static_cast<float>(on(r.resp, j) & on(r.vml, j));
  }
  if (p.returns_high) {
    float* o = p.returns_high + base;
    const float v = p.ret_high[i];
    for (index_t j = j0; j < j1; ++j) o[j] = v * static_cast<float>(on(r.resp, j) & on(r.vmh, j));
  }
  if (p.returns_term) {
    float* o = p.returns_term + base;
    const float v = p.ret_term[i];
    for (index_t j = j0; j < j1; ++j) o[j] = v * static_cast<float>(on(r.resp, j) & on(r.vmt, j));
  }
  if (p.lo_mask) {
    flag_t* o = p.lo_mask + base;
    for (index_t j = j0; j < j1; ++j) o[j] = lo_at(r, j);
  }
  if (p.hi_mask) {
    flag_t* o = p.hi_mask + base;
    for (index_t j = j0; j < j1; ++j) o[j] = hi_at(r, j);
  }
  if (p.term_mask) {
    flag_t* o = p.term_mask + base;
    for (index_t j = j0; j < j1; ++j) o[j] = te_at(r, j);
  }
  if (p.loss_mask) {
    flag_t* o = p.loss_mask + base;
    for (index_t j = j0; j < j1; ++j) o[j] = lo_at(r, j) | hi_at(r, j) | te_at(r, j);
  }
}

}  // namespace hiper
