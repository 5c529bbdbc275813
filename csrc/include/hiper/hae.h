// Hierarchical Advantage Estimation, one trajectory at a time (docs/semantics.md §4.3-§4.5).
//
// For every segment k = [s_k, e_k] of the trajectory, walking segments backwards:
//
//   boundary value B_k = V^H(s_{k+1})   if the episode goes on and a next segment exists,
//                        V^H(s_k)       if truncated (last turn not done) and bootstrap_truncated,
//                        0              otherwise (done, or truncated without bootstrap).
//
//   turn level, t = e_k .. s_k (the recursion never crosses a segment boundary):
//     v'   = V^L(t+1) inside the segment; at t = e_k: V^H(s_{k+1}) / V^L(e_k) when truncated
//            and bootstrap_truncated / 0 (done_t zeroes it in every case)
//     A^L_t = r_t + g (1-done_t) v' - V^L_t + g lam_turn (1-done_t) A^L_{t+1},  R^L = A^L + V^L
//
//   segment level (semi-Markov, discount g^d with d = e_k - s_k + 1):
//     G_k   = sum_j g^j r_{s_k+j}
//     A^H_k = G_k + g^d (1-done_{e_k}) B_k - V^H(s_k) + g^d lam_seg (1-done_{e_k}) A^H_{k+1}
//     R^H_k = A^H_k + V^H(s_k); both written on the segment's first row, zero on the others.
//
//   termination (only with a third value head):
//     G^T_t = r_t + g G^T_{t+1} with G^T_{e_k+1} = B_k;  A^T_t = G^T_t - V^T_t
//
// Faithful to the authors' estimator, a `done` flag on a turn that is not a segment's last
// turn only cuts the turn-level recursion; the segment and termination returns look at the
// done flag of the segment's last turn alone.
#pragma once

#include "hiper/common.h"
#include "hiper/layout.h"

namespace hiper {

struct HAEParams {
  LayoutView layout;
  const float* rewards = nullptr;  // (N,) shaped per-turn rewards
  const flag_t* dones = nullptr;   // (N,)
  const float* v_low = nullptr;    // (N,) V^L at each turn
  const float* v_high = nullptr;   // (N,) V^H at each turn (read at segment starts only)
  const float* v_term = nullptr;   // (N,) V^T; null: no termination head, A^T = R^T = 0
  double gamma = 1.0;
  double lam_turn = 1.0;
  double lam_seg = 1.0;
  bool bootstrap_truncated = false;
  float* adv_low = nullptr;   // (N,) outputs
  float* ret_low = nullptr;
  float* adv_high = nullptr;
  float* ret_high = nullptr;
  float* adv_term = nullptr;
  float* ret_term = nullptr;
};

template <typename acc_t>
HIPER_HOST_DEVICE void hae_trajectory(const HAEParams& p, index_t traj) {
  const LayoutView& lay = p.layout;
  const index_t seg_first = lay.traj_seg_offsets[traj];
  const index_t seg_last = lay.traj_seg_offsets[traj + 1];  // exclusive
  const acc_t g = static_cast<acc_t>(p.gamma);
  const acc_t g_lam_turn = static_cast<acc_t>(p.gamma * p.lam_turn);
  const acc_t lam_seg = static_cast<acc_t>(p.lam_seg);

  acc_t next_seg_adv = 0;
  for (index_t k = seg_last - 1; k >= seg_first; --k) {
    const index_t s = lay.seg_offsets[k];
    const index_t e = lay.seg_offsets[k + 1] - 1;
    const index_t start_row = lay.order[s];
    const index_t end_row = lay.order[e];
    const bool has_next = k + 1 < seg_last;
    const bool end_done = p.dones[end_row] != 0;
    const index_t next_start_row = has_next ? lay.order[e + 1] : -1;

    acc_t boundary_value = 0;
    if (!end_done) {
      if (has_next)
        boundary_value = static_cast<acc_t>(p.v_high[next_start_row]);
      else if (p.bootstrap_truncated)
        boundary_value = static_cast<acc_t>(p.v_high[start_row]);
    }

    acc_t next_adv = 0;              // A^L_{t+1}, zero past the segment end
    acc_t term_return = boundary_value;  // G^T_{t+1}
    acc_t seg_return = 0;            // sum_j g^j r_{t+j} over the rest of the segment
    for (index_t q = e; q >= s; --q) {
      const index_t row = lay.order[q];
      const acc_t r = static_cast<acc_t>(p.rewards[row]);
      const acc_t v = static_cast<acc_t>(p.v_low[row]);
      const acc_t not_done = p.dones[row] != 0 ? 0 : 1;
      acc_t v_next = 0;
      if (q < e)
        v_next = static_cast<acc_t>(p.v_low[lay.order[q + 1]]);
      else if (has_next)
        v_next = static_cast<acc_t>(p.v_high[next_start_row]);
      else if (p.bootstrap_truncated)
        v_next = v;
      const acc_t adv = r + g * not_done * v_next - v + g_lam_turn * not_done * next_adv;
      p.adv_low[row] = static_cast<float>(adv);
      p.ret_low[row] = static_cast<float>(adv + v);
      next_adv = adv;

      term_return = r + g * term_return;
      seg_return = r + g * seg_return;
      if (p.v_term != nullptr) {
        p.ret_term[row] = static_cast<float>(term_return);
        p.adv_term[row] = static_cast<float>(term_return - static_cast<acc_t>(p.v_term[row]));
      } else {
        p.ret_term[row] = 0.0f;
        p.adv_term[row] = 0.0f;
      }
      p.adv_high[row] = 0.0f;  // overwritten below on the segment's first row
      p.ret_high[row] = 0.0f;
    }

    const acc_t g_d = ipow<acc_t>(g, e - s + 1);
    const acc_t end_not_done = end_done ? 0 : 1;
    const acc_t v_start = static_cast<acc_t>(p.v_high[start_row]);
    const acc_t seg_adv =
        seg_return + g_d * end_not_done * boundary_value - v_start + g_d * lam_seg * end_not_done * next_seg_adv;
    p.adv_high[start_row] = static_cast<float>(seg_adv);
    p.ret_high[start_row] = static_cast<float>(seg_adv + v_start);
    next_seg_adv = seg_adv;
  }
}

}  // namespace hiper
