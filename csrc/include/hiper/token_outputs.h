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
// Each output pointer may be null (not written). One pass per row writes every output.
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

HIPER_HOST_DEVICE bool flag_at(const flag_t* mask, index_t k) { return mask != nullptr && mask[k] != 0; }

// Writes positions [j_begin, j_end) of row i. The CPU launcher calls it for whole rows;
// a GPU launcher can split a row over threads.
HIPER_HOST_DEVICE void token_outputs_row(const TokenOutputParams& p, index_t i, index_t j_begin, index_t j_end) {
  const bool boundary = p.is_boundary[i] != 0;
  const float a_lo = p.adv_low[i], a_hi = p.adv_high[i], a_te = p.adv_term[i];
  const float r_lo = p.ret_low[i], r_hi = p.ret_high[i], r_te = p.ret_term[i];
  const bool hi_sub = boundary && p.high_on_subgoal;
  const bool hi_sw = boundary && p.high_on_switch;
  const index_t base = i * p.length;
  for (index_t j = j_begin; j < j_end; ++j) {
    const index_t k = base + j;
    const bool resp = p.response_mask[k] != 0;
    const bool lo = resp && (p.action_mask == nullptr || p.action_mask[k] != 0);
    const bool sub = resp && flag_at(p.subgoal_mask, k);
    const bool sw = resp && flag_at(p.switch_mask, k);
    const bool hi = (hi_sub && sub) || (hi_sw && sw);
    const bool te = p.term_on_switch && sw;
    // Multiplying by the mask (not selecting) mirrors the reference: NaN stays NaN.
    const float v_lo = a_lo * static_cast<float>(lo);
    const float v_hi = a_hi * static_cast<float>(hi);
    const float v_te = a_te * static_cast<float>(te);
    if (p.advantages) p.advantages[k] = v_lo + v_hi + v_te;
    if (p.advantages_low) p.advantages_low[k] = v_lo;
    if (p.advantages_high) p.advantages_high[k] = v_hi;
    if (p.advantages_term) p.advantages_term[k] = v_te;
    if (p.returns_low) p.returns_low[k] = r_lo * static_cast<float>(resp && flag_at(p.value_mask_low, k));
    if (p.returns_high) p.returns_high[k] = r_hi * static_cast<float>(resp && flag_at(p.value_mask_high, k));
    if (p.returns_term) p.returns_term[k] = r_te * static_cast<float>(resp && flag_at(p.value_mask_term, k));
    if (p.lo_mask) p.lo_mask[k] = lo;
    if (p.hi_mask) p.hi_mask[k] = hi;
    if (p.term_mask) p.term_mask[k] = te;
    if (p.loss_mask) p.loss_mask[k] = lo || hi || te;
  }
}

}  // namespace hiper
