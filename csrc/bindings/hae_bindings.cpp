// Bindings of the per-turn ops: reward shaping, HAE, subgoal-consistency flags and the
// normalisation statistics.
#include <stdexcept>
#include <string>

#include "bindings/arrays.h"
#include "bindings/ops.h"
#include "bindings/params.h"
#include "bindings/threads.h"
#include "cpu/launchers.h"

namespace hiper::bindings {
namespace {

// Checked shaping parameters. Pointers refer to the caller's arrays, alive for the call.
ShapingParams shaping_params(const Layout& layout, const py::object& rewards, const py::object& is_new_subgoal,
                             const py::object& is_action_valid, const py::object& subgoal_changed,
                             double keep_penalty, KeepPenaltyMode keep_penalty_mode,
                             double invalid_action_penalty_coef, double keep_consistency_penalty,
                             const py::object& out) {
  py::array r = checked_array(rewards, "rewards", Kind::kFloat32, {-1});
  const auto n = r.shape(0);
  check_layout_rows(layout, n, "rewards");
  py::array sw = checked_array(is_new_subgoal, "is_new_subgoal", Kind::kFlag, {n}, true);
  py::array valid = checked_array(is_action_valid, "is_action_valid", Kind::kFloat32, {n}, true);
  py::array changed = checked_array(subgoal_changed, "subgoal_changed", Kind::kFlag, {n}, true);
  py::array o = checked_array(out, "out", Kind::kFloat32, {n}, false, true);
  check_finite(r, "rewards");
  check_finite(valid, "is_action_valid");
  ShapingParams p;
  p.keep_penalty_mode = keep_penalty_mode;
  p.layout = layout.view();
  p.rewards = in_ptr<float>(r);
  p.is_new_subgoal = in_ptr<flag_t>(sw);
  p.is_action_valid = in_ptr<float>(valid);
  p.subgoal_changed = in_ptr<flag_t>(changed);
  p.keep_penalty = keep_penalty;
  p.invalid_action_penalty_coef = invalid_action_penalty_coef;
  p.keep_consistency_penalty = keep_consistency_penalty;
  p.shaped = out_ptr<float>(o);
  return p;
}

// Checked HAE parameters; `rewards` may be None when the pipeline fills it in.
HAEParams hae_params(const Layout& layout, const py::object& rewards, const py::object& dones,
                     const py::object& v_low, const py::object& v_high, const py::object& v_term, double gamma,
                     double lam_turn, double lam_seg, bool bootstrap_truncated, const py::object& adv_low,
                     const py::object& ret_low, const py::object& adv_high, const py::object& ret_high,
                     const py::object& adv_term, const py::object& ret_term) {
  const py::ssize_t n = static_cast<py::ssize_t>(layout.order.size());
  py::array r = checked_array(rewards, "rewards", Kind::kFloat32, {n}, true);
  py::array d = checked_array(dones, "dones", Kind::kFlag, {n});
  py::array vl = checked_array(v_low, "v_low", Kind::kFloat32, {n});
  py::array vh = checked_array(v_high, "v_high", Kind::kFloat32, {n});
  py::array vt = checked_array(v_term, "v_term", Kind::kFloat32, {n}, true);
  py::array outs[6] = {
      checked_array(adv_low, "adv_low", Kind::kFloat32, {n}, false, true),
      checked_array(ret_low, "ret_low", Kind::kFloat32, {n}, false, true),
      checked_array(adv_high, "adv_high", Kind::kFloat32, {n}, false, true),
      checked_array(ret_high, "ret_high", Kind::kFloat32, {n}, false, true),
      checked_array(adv_term, "adv_term", Kind::kFloat32, {n}, false, true),
      checked_array(ret_term, "ret_term", Kind::kFloat32, {n}, false, true),
  };
  check_finite(r, "rewards");
  check_finite(vl, "v_low");
  check_finite(vh, "v_high");
  check_finite(vt, "v_term");
  check_unit(gamma, "gamma");
  check_unit(lam_turn, "lam_turn");
  check_unit(lam_seg, "lam_seg");
  HAEParams p;
  p.layout = layout.view();
  p.rewards = in_ptr<float>(r);
  p.dones = in_ptr<flag_t>(d);
  p.v_low = in_ptr<float>(vl);
  p.v_high = in_ptr<float>(vh);
  p.v_term = in_ptr<float>(vt);
  p.gamma = gamma;
  p.lam_turn = lam_turn;
  p.lam_seg = lam_seg;
  p.bootstrap_truncated = bootstrap_truncated;
  p.adv_low = out_ptr<float>(outs[0]);
  p.ret_low = out_ptr<float>(outs[1]);
  p.adv_high = out_ptr<float>(outs[2]);
  p.ret_high = out_ptr<float>(outs[3]);
  p.adv_term = out_ptr<float>(outs[4]);
  p.ret_term = out_ptr<float>(outs[5]);
  return p;
}

void shape_rewards_py(const Layout& layout, const py::object& rewards, const py::object& is_new_subgoal,
                      const py::object& is_action_valid, const py::object& subgoal_changed, double keep_penalty,
                      const std::string& keep_penalty_mode, double invalid_action_penalty_coef,
                      double keep_consistency_penalty, const py::object& out) {
  const ShapingParams p = shaping_params(layout, rewards, is_new_subgoal, is_action_valid, subgoal_changed,
                                         keep_penalty, parse_keep_mode(keep_penalty_mode),
                                         invalid_action_penalty_coef, keep_consistency_penalty, out);
  ReleaseGil release;
  cpu::shape_rewards(p);
}

void hae_py(const Layout& layout, const py::object& rewards, const py::object& dones, const py::object& v_low,
            const py::object& v_high, const py::object& v_term, double gamma, double lam_turn, double lam_seg,
            bool bootstrap_truncated, const py::object& adv_low, const py::object& ret_low,
            const py::object& adv_high, const py::object& ret_high, const py::object& adv_term,
            const py::object& ret_term) {
  if (rewards.is_none()) throw py::type_error("rewards: expected an array, got None");
  const HAEParams p = hae_params(layout, rewards, dones, v_low, v_high, v_term, gamma, lam_turn, lam_seg,
                                 bootstrap_truncated, adv_low, ret_low, adv_high, ret_high, adv_term, ret_term);
  ReleaseGil release;
  cpu::hae(p);
}

py::tuple hae_pipeline_py(const Layout& layout, const py::object& config, const py::object& rewards,
                          const py::object& is_new_subgoal, const py::object& is_action_valid,
                          const py::object& subgoal_changed, const py::object& dones, const py::object& v_low,
                          const py::object& v_high, const py::object& v_term, const py::object& credited_low,
                          const py::object& credited_high, const py::object& credited_term,
                          const py::object& shaped, const py::object& adv_low, const py::object& ret_low,
                          const py::object& adv_high, const py::object& ret_high, const py::object& adv_term,
                          const py::object& ret_term) {
  const HAEConfigFields c = read_hae_config(config);
  PipelineParams p;
  p.shaping = shaping_params(layout, rewards, is_new_subgoal, is_action_valid, subgoal_changed, c.keep_penalty,
                             c.keep_penalty_mode, c.invalid_action_penalty_coef, c.keep_consistency_penalty, shaped);
  p.hae = hae_params(layout, py::none(), dones, v_low, v_high, v_term, c.gamma, c.lam_turn, c.lam_seg,
                     c.bootstrap_truncated, adv_low, ret_low, adv_high, ret_high, adv_term, ret_term);
  const py::ssize_t n = static_cast<py::ssize_t>(layout.order.size());
  py::array cl = checked_array(credited_low, "credited_low", Kind::kFlag, {n}, true);
  py::array ch = checked_array(credited_high, "credited_high", Kind::kFlag, {n}, true);
  py::array ct = checked_array(credited_term, "credited_term", Kind::kFlag, {n}, true);
  p.normalize = c.normalize;
  p.credited_low = in_ptr<flag_t>(cl);
  p.credited_high = in_ptr<flag_t>(ch);
  p.credited_term = in_ptr<flag_t>(ct);
  p.is_boundary = layout.is_boundary.data();
  PipelineStats stats;
  {
    ReleaseGil release;
    stats = cpu::hae_pipeline(p);
  }
  auto as_tuple = [](const Moments& m) { return py::make_tuple(m.count, m.mean, m.std); };
  return py::make_tuple(as_tuple(stats.low), as_tuple(stats.high), as_tuple(stats.term));
}

template <typename token_t>
void run_subgoal_changed(const Layout& layout, py::ssize_t L, const py::array& tok, const py::array& sub,
                         const py::array& resp, bool requires_both, py::array& out) {
  ConsistencyParams<token_t> p;
  p.layout = layout.view();
  p.length = L;
  p.tokens = in_ptr<token_t>(tok);
  p.subgoal_mask = in_ptr<flag_t>(sub);
  p.response_mask = in_ptr<flag_t>(resp);
  p.requires_both = requires_both;
  p.changed = out_ptr<flag_t>(out);
  ReleaseGil release;
  cpu::subgoal_changed<token_t>(p);
}

void subgoal_changed_py(const Layout& layout, const py::object& responses, const py::object& subgoal_mask,
                        const py::object& response_mask, bool requires_both, py::object out) {
  py::array tok = checked_array(responses, "responses", Kind::kToken, {-1, -1});
  const auto n = tok.shape(0), L = tok.shape(1);
  check_layout_rows(layout, n, "responses");
  py::array sub = checked_array(subgoal_mask, "subgoal_mask", Kind::kFlag, {n, L});
  py::array resp = checked_array(response_mask, "response_mask", Kind::kFlag, {n, L});
  py::array o = checked_array(out, "out", Kind::kFlag, {n}, false, true);
  if (tok.dtype().itemsize() == 8)
    run_subgoal_changed<int64_t>(layout, L, tok, sub, resp, requires_both, o);
  else
    run_subgoal_changed<int32_t>(layout, L, tok, sub, resp, requires_both, o);
}

py::tuple masked_moments_py(const py::object& x, const py::object& include) {
  py::array a = checked_array(x, "x", Kind::kFloat32, {-1});
  py::array inc = checked_array(include, "include", Kind::kFlag, {a.shape(0)}, true);
  Moments mo;
  {
    ReleaseGil release;
    mo = cpu::masked_moments(a.shape(0), in_ptr<float>(a), in_ptr<flag_t>(inc));
  }
  return py::make_tuple(mo.count, mo.mean, mo.std);
}

void normalize_py(const py::object& x, const py::object& include, double mean, double std, double eps, py::object out) {
  py::array a = checked_array(x, "x", Kind::kFloat32, {-1});
  const auto n = a.shape(0);
  py::array inc = checked_array(include, "include", Kind::kFlag, {n}, true);
  py::array o = checked_array(out, "out", Kind::kFloat32, {n}, false, true);
  if (!(std >= 0.0) || !(eps >= 0.0) || !(std + eps > 0.0))
    throw py::value_error("std, eps: need std >= 0, eps >= 0 and std + eps > 0");
  Moments mo;
  mo.mean = mean;
  mo.std = std;
  ReleaseGil release;
  cpu::normalize(n, in_ptr<float>(a), in_ptr<flag_t>(inc), mo, eps, out_ptr<float>(o));
}

}  // namespace

void register_hae_ops(py::module_& m) {
  using namespace pybind11::literals;
  m.def("shape_rewards", &shape_rewards_py, "layout"_a, "rewards"_a, "is_new_subgoal"_a, "is_action_valid"_a,
        "subgoal_changed"_a, "keep_penalty"_a, "keep_penalty_mode"_a, "invalid_action_penalty_coef"_a,
        "keep_consistency_penalty"_a, "out"_a, "Per-turn reward shaping (docs/semantics.md 4.1) into `out` (float32, N).");
  m.def("hae", &hae_py, "layout"_a, "rewards"_a, "dones"_a, "v_low"_a, "v_high"_a, "v_term"_a, "gamma"_a,
        "lam_turn"_a, "lam_seg"_a, "bootstrap_truncated"_a, "adv_low"_a, "ret_low"_a, "adv_high"_a, "ret_high"_a,
        "adv_term"_a, "ret_term"_a, "Per-turn HAE advantages and returns (docs/semantics.md 4.3-4.5) into the six (N,) outputs.");
  m.def("hae_pipeline", &hae_pipeline_py, py::kw_only(), "layout"_a, "config"_a, "rewards"_a, "is_new_subgoal"_a,
        "is_action_valid"_a, "subgoal_changed"_a, "dones"_a, "v_low"_a, "v_high"_a, "v_term"_a, "credited_low"_a,
        "credited_high"_a, "credited_term"_a, "shaped"_a, "adv_low"_a, "ret_low"_a, "adv_high"_a, "ret_high"_a,
        "adv_term"_a, "ret_term"_a,
        "Shaping, HAE and (if config.norm_adv) normalisation in one call, with the scalars read from `config` (a "
        "hiper.HAEConfig). Returns ((count, mean, std) for low, high, term).");
  m.def("subgoal_changed", &subgoal_changed_py, "layout"_a, "responses"_a, "subgoal_mask"_a, "response_mask"_a,
        "requires_both"_a, "out"_a, "Per-turn flag: subgoal token ids differ from the previous turn's (docs/semantics.md 4.1.3).");
  m.def("masked_moments", &masked_moments_py, "x"_a, "include"_a,
        "(count, mean, population std) of x over rows where include is set.");
  m.def("normalize", &normalize_py, "x"_a, "include"_a, "mean"_a, "std"_a, "eps"_a, "out"_a,
        "out = (x - mean) / (std + eps) where include is set, x elsewhere.");
}

}  // namespace hiper::bindings
