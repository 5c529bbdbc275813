// Bindings of the (N, L) passes: the per-row mask scan and the token-level outputs.
#include "bindings/arrays.h"
#include "bindings/ops.h"
#include "bindings/threads.h"
#include "cpu/launchers.h"

namespace hiper::bindings {
namespace {

py::dict row_scan_py(const py::object& response_mask, const py::object& action_mask, const py::object& subgoal_mask,
                     const py::object& switch_mask, const py::object& value_mask_low,
                     const py::object& value_mask_high, const py::object& value_mask_term,
                     const py::object& values_low, const py::object& values_high, const py::object& values_term) {
  py::array resp = checked_array(response_mask, "response_mask", Kind::kFlag, {-1, -1});
  const auto n = resp.shape(0), L = resp.shape(1);
  if (L >= (py::ssize_t{1} << 31)) throw py::value_error("response_mask: rows longer than 2^31 - 1 tokens");
  py::array act = checked_array(action_mask, "action_mask", Kind::kFlag, {n, L}, true);
  py::array sub = checked_array(subgoal_mask, "subgoal_mask", Kind::kFlag, {n, L}, true);
  py::array sw = checked_array(switch_mask, "switch_mask", Kind::kFlag, {n, L}, true);
  py::array vm[3] = {checked_array(value_mask_low, "value_mask_low", Kind::kFlag, {n, L}, true),
                     checked_array(value_mask_high, "value_mask_high", Kind::kFlag, {n, L}, true),
                     checked_array(value_mask_term, "value_mask_term", Kind::kFlag, {n, L}, true)};
  py::array vals[3] = {checked_array(values_low, "values_low", Kind::kFloat32, {n, L}, true),
                       checked_array(values_high, "values_high", Kind::kFloat32, {n, L}, true),
                       checked_array(values_term, "values_term", Kind::kFloat32, {n, L}, true)};
  for (int h = 0; h < 3; ++h)
    if (vals[h].ptr() != nullptr && L == 0 && n > 0)
      throw py::value_error("response_mask: responses of length 0 have no position to read a value at");
  py::array_t<int64_t> length(n), pos_low(n), pos_high(n), pos_term(n);
  py::array_t<float> at_low(n), at_high(n), at_term(n);
  py::array_t<bool> has_action(n), has_subgoal(n), has_switch(n);
  RowScanParams p;
  p.num_rows = n;
  p.length = L;
  p.response_mask = in_ptr<flag_t>(resp);
  p.action_mask = in_ptr<flag_t>(act);
  p.subgoal_mask = in_ptr<flag_t>(sub);
  p.switch_mask = in_ptr<flag_t>(sw);
  p.response_length = length.mutable_data();
  p.has_action = reinterpret_cast<flag_t*>(has_action.mutable_data());
  p.has_subgoal = reinterpret_cast<flag_t*>(has_subgoal.mutable_data());
  p.has_switch = reinterpret_cast<flag_t*>(has_switch.mutable_data());
  int64_t* pos[3] = {pos_low.mutable_data(), pos_high.mutable_data(), pos_term.mutable_data()};
  float* at[3] = {at_low.mutable_data(), at_high.mutable_data(), at_term.mutable_data()};
  for (int h = 0; h < 3; ++h) {
    p.value_masks[h] = in_ptr<flag_t>(vm[h]);
    p.value_pos[h] = pos[h];
    p.values[h] = in_ptr<float>(vals[h]);
    p.value_at[h] = at[h];
  }
  {
    ReleaseGil release;
    cpu::row_scan(p);
  }
  py::dict out;
  out["response_length"] = length;
  out["has_action"] = has_action;
  out["has_subgoal"] = has_subgoal;
  out["has_switch"] = has_switch;
  out["pos_low"] = pos_low;
  out["pos_high"] = pos_high;
  out["pos_term"] = pos_term;
  const char* value_names[3] = {"value_low", "value_high", "value_term"};
  py::array_t<float> value_outs[3] = {at_low, at_high, at_term};
  for (int h = 0; h < 3; ++h) out[value_names[h]] = vals[h].ptr() != nullptr ? py::object(value_outs[h]) : py::none();
  return out;
}

void token_outputs_py(const py::object& response_mask, const py::object& action_mask, const py::object& subgoal_mask,
                      const py::object& switch_mask, const py::object& value_mask_low,
                      const py::object& value_mask_high, const py::object& value_mask_term,
                      const py::object& is_boundary, const py::object& adv_low, const py::object& adv_high,
                      const py::object& adv_term, const py::object& ret_low, const py::object& ret_high,
                      const py::object& ret_term, bool high_on_subgoal, bool high_on_switch, bool term_on_switch,
                      py::object advantages, py::object advantages_low, py::object advantages_high,
                      py::object advantages_term, py::object returns_low, py::object returns_high,
                      py::object returns_term, py::object lo_mask, py::object hi_mask, py::object term_mask,
                      py::object loss_mask) {
  py::array resp = checked_array(response_mask, "response_mask", Kind::kFlag, {-1, -1});
  const auto n = resp.shape(0), L = resp.shape(1);
  auto mask_in = [&](const py::object& o, const char* name) { return checked_array(o, name, Kind::kFlag, {n, L}, true); };
  auto turn_in = [&](const py::object& o, const char* name) { return checked_array(o, name, Kind::kFloat32, {n}); };
  auto f_out = [&](const py::object& o, const char* name) {
    return checked_array(o, name, Kind::kFloat32, {n, L}, true, true);
  };
  auto m_out = [&](const py::object& o, const char* name) { return checked_array(o, name, Kind::kFlag, {n, L}, true, true); };
  py::array act = mask_in(action_mask, "action_mask"), sub = mask_in(subgoal_mask, "subgoal_mask"),
            sw = mask_in(switch_mask, "switch_mask"), vml = mask_in(value_mask_low, "value_mask_low"),
            vmh = mask_in(value_mask_high, "value_mask_high"), vmt = mask_in(value_mask_term, "value_mask_term");
  py::array bnd = checked_array(is_boundary, "is_boundary", Kind::kFlag, {n});
  py::array al = turn_in(adv_low, "adv_low"), ah = turn_in(adv_high, "adv_high"), at = turn_in(adv_term, "adv_term"),
            rl = turn_in(ret_low, "ret_low"), rh = turn_in(ret_high, "ret_high"), rt = turn_in(ret_term, "ret_term");
  py::array o_adv = f_out(advantages, "advantages"), o_al = f_out(advantages_low, "advantages_low"),
            o_ah = f_out(advantages_high, "advantages_high"), o_at = f_out(advantages_term, "advantages_term"),
            o_rl = f_out(returns_low, "returns_low"), o_rh = f_out(returns_high, "returns_high"),
            o_rt = f_out(returns_term, "returns_term");
  py::array o_lo = m_out(lo_mask, "lo_mask"), o_hi = m_out(hi_mask, "hi_mask"), o_te = m_out(term_mask, "term_mask"),
            o_loss = m_out(loss_mask, "loss_mask");

  TokenOutputParams p;
  p.num_rows = n;
  p.length = L;
  p.response_mask = in_ptr<flag_t>(resp);
  p.action_mask = in_ptr<flag_t>(act);
  p.subgoal_mask = in_ptr<flag_t>(sub);
  p.switch_mask = in_ptr<flag_t>(sw);
  p.value_mask_low = in_ptr<flag_t>(vml);
  p.value_mask_high = in_ptr<flag_t>(vmh);
  p.value_mask_term = in_ptr<flag_t>(vmt);
  p.is_boundary = in_ptr<flag_t>(bnd);
  p.adv_low = in_ptr<float>(al);
  p.adv_high = in_ptr<float>(ah);
  p.adv_term = in_ptr<float>(at);
  p.ret_low = in_ptr<float>(rl);
  p.ret_high = in_ptr<float>(rh);
  p.ret_term = in_ptr<float>(rt);
  p.high_on_subgoal = high_on_subgoal;
  p.high_on_switch = high_on_switch;
  p.term_on_switch = term_on_switch;
  p.advantages = out_ptr<float>(o_adv);
  p.advantages_low = out_ptr<float>(o_al);
  p.advantages_high = out_ptr<float>(o_ah);
  p.advantages_term = out_ptr<float>(o_at);
  p.returns_low = out_ptr<float>(o_rl);
  p.returns_high = out_ptr<float>(o_rh);
  p.returns_term = out_ptr<float>(o_rt);
  p.lo_mask = out_ptr<flag_t>(o_lo);
  p.hi_mask = out_ptr<flag_t>(o_hi);
  p.term_mask = out_ptr<flag_t>(o_te);
  p.loss_mask = out_ptr<flag_t>(o_loss);
  ReleaseGil release;
  cpu::token_outputs(p);
}

}  // namespace

void register_token_ops(py::module_& m) {
  using namespace pybind11::literals;
  m.def("row_scan", &row_scan_py, "response_mask"_a, "action_mask"_a = py::none(), "subgoal_mask"_a = py::none(),
        "switch_mask"_a = py::none(), "value_mask_low"_a = py::none(), "value_mask_high"_a = py::none(),
        "value_mask_term"_a = py::none(), "values_low"_a = py::none(), "values_high"_a = py::none(),
        "values_term"_a = py::none(),
        "Per-row summary of (N, L) masks: response length, non-empty spans, value read positions and, given the "
        "heads' float32 outputs, the values there.");
  m.def("token_outputs", &token_outputs_py, "response_mask"_a, "action_mask"_a, "subgoal_mask"_a, "switch_mask"_a,
        "value_mask_low"_a, "value_mask_high"_a, "value_mask_term"_a, "is_boundary"_a, "adv_low"_a, "adv_high"_a,
        "adv_term"_a, "ret_low"_a, "ret_high"_a, "ret_term"_a, "high_on_subgoal"_a, "high_on_switch"_a,
        "term_on_switch"_a, "advantages"_a = py::none(), "advantages_low"_a = py::none(),
        "advantages_high"_a = py::none(), "advantages_term"_a = py::none(), "returns_low"_a = py::none(),
        "returns_high"_a = py::none(), "returns_term"_a = py::none(), "lo_mask"_a = py::none(),
        "hi_mask"_a = py::none(), "term_mask"_a = py::none(), "loss_mask"_a = py::none(),
        "Broadcast per-turn advantages and returns onto token masks (docs/semantics.md 4.6); writes only the outputs given.");
}

}  // namespace hiper::bindings
