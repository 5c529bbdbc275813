// Token-level HAE outputs (docs/semantics.md §4.6, §4.8): per-turn scalars broadcast under span masks.
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
// Mask bytes as 0/1 through bit() (common.h), which keeps these loops branch-free.
HIPER_HOST_DEVICE float unit(flag_t x) { return static_cast<float>(bit(x)); }
HIPER_HOST_DEVICE int on(const flag_t* m, index_t j) { return bit(m[j]); }
HIPER_HOST_DEVICE int lo_at(const TokenRow& r, index_t j) { return on(r.resp, j) & on(r.act, j); }
HIPER_HOST_DEVICE int hi_at(const TokenRow& r, index_t j) {
  return on(r.resp, j) & ((on(r.sub, j) & r.hi_sub) | (on(r.sw, j) & r.hi_sw));
}
HIPER_HOST_DEVICE int te_at(const TokenRow& r, index_t j) { return on(r.resp, j) & on(r.sw, j) & r.te_sw; }

// Writing positions [j0, j1) of row i. Multiplying by the flag (not selecting) matches the
// reference arithmetic exactly, including signed zeros.
// The drop-in's case, every output but the loss mask, in two fused loops. Row pointers are
// passed as restrict-qualified parameters: gcc vectorises these loops only when it knows the
// ten output streams do not alias (the bindings reject outputs overlapping inputs).
HIPER_HOST_DEVICE bool writes_all_but_loss(const TokenOutputParams& p) {
  return p.advantages && p.advantages_low && p.advantages_high && p.advantages_term && p.returns_low &&
         p.returns_high && p.returns_term && p.lo_mask && p.hi_mask && p.term_mask;
}

HIPER_HOST_DEVICE void span_masks(const flag_t* HIPER_RESTRICT resp, const flag_t* HIPER_RESTRICT act,
                                  const flag_t* HIPER_RESTRICT sub, const flag_t* HIPER_RESTRICT sw, int hi_sub,
                                  int hi_sw, int te_sw, flag_t* HIPER_RESTRICT lo, flag_t* HIPER_RESTRICT hi,
                                  flag_t* HIPER_RESTRICT te, index_t n) {
  for (index_t j = 0; j < n; ++j) {
    const int r = bit(resp[j]), w = bit(sw[j]);
    lo[j] = static_cast<flag_t>(r & bit(act[j]));
    hi[j] = static_cast<flag_t>(r & ((bit(sub[j]) & hi_sub) | (w & hi_sw)));
    te[j] = static_cast<flag_t>(r & w & te_sw);
  }
}

HIPER_HOST_DEVICE void span_values(const flag_t* HIPER_RESTRICT resp, const flag_t* HIPER_RESTRICT lo,
                                   const flag_t* HIPER_RESTRICT hi, const flag_t* HIPER_RESTRICT te,
                                   const flag_t* HIPER_RESTRICT vml, const flag_t* HIPER_RESTRICT vmh,
                                   const flag_t* HIPER_RESTRICT vmt, float a_lo, float a_hi, float a_te, float r_lo,
                                   float r_hi, float r_te, float* HIPER_RESTRICT adv, float* HIPER_RESTRICT adv_lo,
                                   float* HIPER_RESTRICT adv_hi, float* HIPER_RESTRICT adv_te,
                                   float* HIPER_RESTRICT ret_lo, float* HIPER_RESTRICT ret_hi,
                                   float* HIPER_RESTRICT ret_te, index_t n) {
  for (index_t j = 0; j < n; ++j) {
    // 0/1 factors as floats: (resp * mask) is exactly the 0/1 flag.
    const float r = unit(resp[j]);
    const float v_lo = a_lo * unit(lo[j]);
    const float v_hi = a_hi * unit(hi[j]);
    const float v_te = a_te * unit(te[j]);
    adv[j] = v_lo + v_hi + v_te;
    adv_lo[j] = v_lo;
    adv_hi[j] = v_hi;
    adv_te[j] = v_te;
    ret_lo[j] = r_lo * (r * unit(vml[j]));
    ret_hi[j] = r_hi * (r * unit(vmh[j]));
    ret_te[j] = r_te * (r * unit(vmt[j]));
  }
}

HIPER_HOST_DEVICE void token_outputs_fused(const TokenOutputParams& p, const TokenRow& r, index_t i, index_t j0,
                                           index_t j1) {
  const index_t at = i * p.length + j0, n = j1 - j0;
  flag_t* lo = p.lo_mask + at;
  flag_t* hi = p.hi_mask + at;
  flag_t* te = p.term_mask + at;
  span_masks(r.resp + j0, r.act + j0, r.sub + j0, r.sw + j0, r.hi_sub, r.hi_sw, r.te_sw, lo, hi, te, n);
  span_values(r.resp + j0, lo, hi, te, r.vml + j0, r.vmh + j0, r.vmt + j0, p.adv_low[i], p.adv_high[i],
              p.adv_term[i], p.ret_low[i], p.ret_high[i], p.ret_term[i], p.advantages + at,
              p.advantages_low + at, p.advantages_high + at, p.advantages_term + at, p.returns_low + at,
              p.returns_high + at, p.returns_term + at, n);
  if (p.loss_mask) {
    flag_t* o = p.loss_mask + at;
    for (index_t j = 0; j < n; ++j) o[j] = static_cast<flag_t>(lo[j] | hi[j] | te[j]);
  }
}

HIPER_HOST_DEVICE void token_outputs_span(const TokenOutputParams& p, const flag_t* zero_row, index_t i, index_t j0,
                                          index_t j1) {
  const TokenRow r = token_row(p, zero_row, i);
  if (writes_all_but_loss(p)) {
    token_outputs_fused(p, r, i, j0, j1);
    return;
  }
  // Any subset of outputs: one short loop per requested output.
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
