// CUDA bindings of the (N, L) passes: the per-row mask scan and the token-level outputs.
#include "bindings/ops.h"

#if defined(HIPER_WITH_CUDA)
#include "bindings/cuda_args.h"

namespace hiper::bindings {
namespace {

void row_scan_py(index_t n, index_t length, ptr_t response_mask, ptr_t action_mask, ptr_t subgoal_mask,
                 ptr_t switch_mask, ptr_t value_mask_low, ptr_t value_mask_high, ptr_t value_mask_term,
                 ptr_t values_low, ptr_t values_high, ptr_t values_term, ptr_t response_length, ptr_t has_action,
                 ptr_t has_subgoal, ptr_t has_switch, ptr_t pos_low, ptr_t pos_high, ptr_t pos_term, ptr_t value_low,
                 ptr_t value_high, ptr_t value_term, int device, ptr_t stream) {
  // The same limits the CPU binding enforces.
  if (length >= (index_t{1} << 31)) throw py::value_error("response_mask: rows longer than 2^31 - 1 tokens");
  if ((values_low | values_high | values_term) != 0 && length == 0 && n > 0)
    throw py::value_error("response_mask: responses of length 0 have no position to read a value at");
  RowScanParams p;
  p.num_rows = n;
  p.length = length;
  p.response_mask = in<flag_t>(response_mask);
  p.action_mask = in<flag_t>(action_mask);
  p.subgoal_mask = in<flag_t>(subgoal_mask);
  p.switch_mask = in<flag_t>(switch_mask);
  p.response_length = out<index_t>(response_length);
  p.has_action = out<flag_t>(has_action);
  p.has_subgoal = out<flag_t>(has_subgoal);
  p.has_switch = out<flag_t>(has_switch);
  const ptr_t masks[3] = {value_mask_low, value_mask_high, value_mask_term};
  const ptr_t values[3] = {values_low, values_high, values_term};
  const ptr_t positions[3] = {pos_low, pos_high, pos_term};
  const ptr_t picked[3] = {value_low, value_high, value_term};
  for (int h = 0; h < 3; ++h) {
    p.value_masks[h] = in<flag_t>(masks[h]);
    p.values[h] = in<float>(values[h]);
    p.value_pos[h] = out<index_t>(positions[h]);
    p.value_at[h] = out<float>(picked[h]);
  }
  on_device(device, [&] { cuda::row_scan(p, stream); });
}

void token_outputs_py(index_t n, index_t length, ptr_t response_mask, ptr_t action_mask, ptr_t subgoal_mask,
                      ptr_t switch_mask, ptr_t value_mask_low, ptr_t value_mask_high, ptr_t value_mask_term,
                      ptr_t is_boundary, ptr_t adv_low, ptr_t adv_high, ptr_t adv_term, ptr_t ret_low,
                      ptr_t ret_high, ptr_t ret_term, bool high_on_subgoal, bool high_on_switch, bool term_on_switch,
                      ptr_t advantages, ptr_t advantages_low, ptr_t advantages_high, ptr_t advantages_term,
                      ptr_t returns_low, ptr_t returns_high, ptr_t returns_term, ptr_t lo_mask, ptr_t hi_mask,
                      ptr_t term_mask, ptr_t loss_mask, ptr_t workspace, size_t workspace_bytes, int device,
                      ptr_t stream) {
  TokenOutputParams p;
  p.num_rows = n;
  p.length = length;
  p.response_mask = in<flag_t>(response_mask);
  p.action_mask = in<flag_t>(action_mask);
  p.subgoal_mask = in<flag_t>(subgoal_mask);
  p.switch_mask = in<flag_t>(switch_mask);
  p.value_mask_low = in<flag_t>(value_mask_low);
  p.value_mask_high = in<flag_t>(value_mask_high);
  p.value_mask_term = in<flag_t>(value_mask_term);
  p.is_boundary = in<flag_t>(is_boundary);
  p.adv_low = in<float>(adv_low);
  p.adv_high = in<float>(adv_high);
  p.adv_term = in<float>(adv_term);
  p.ret_low = in<float>(ret_low);
  p.ret_high = in<float>(ret_high);
  p.ret_term = in<float>(ret_term);
  p.high_on_subgoal = high_on_subgoal;
  p.high_on_switch = high_on_switch;
  p.term_on_switch = term_on_switch;
  p.advantages = out<float>(advantages);
  p.advantages_low = out<float>(advantages_low);
  p.advantages_high = out<float>(advantages_high);
  p.advantages_term = out<float>(advantages_term);
  p.returns_low = out<float>(returns_low);
  p.returns_high = out<float>(returns_high);
  p.returns_term = out<float>(returns_term);
  p.lo_mask = out<flag_t>(lo_mask);
  p.hi_mask = out<flag_t>(hi_mask);
  p.term_mask = out<flag_t>(term_mask);
  p.loss_mask = out<flag_t>(loss_mask);
  on_device(device, [&] {
    cuda::token_outputs(p, reinterpret_cast<void*>(workspace), workspace_bytes, stream);
  });
}

}  // namespace

void register_cuda_token_ops(py::module_& m) {
  using namespace pybind11::literals;
  m.def(
      "cuda_token_outputs_workspace_bytes",
      [](index_t length, int device) {
        return on_device(device, [&] { return cuda::token_outputs_workspace_bytes(length); });
      },
      py::kw_only(), "length"_a, "device"_a, "Device workspace (bytes) cuda_token_outputs needs for rows of `length`.");
  m.def("cuda_row_scan", &row_scan_py, py::kw_only(), "n"_a, "length"_a, "response_mask"_a, "action_mask"_a,
        "subgoal_mask"_a, "switch_mask"_a, "value_mask_low"_a, "value_mask_high"_a, "value_mask_term"_a,
        "values_low"_a, "values_high"_a, "values_term"_a, "response_length"_a, "has_action"_a, "has_subgoal"_a,
        "has_switch"_a, "pos_low"_a, "pos_high"_a, "pos_term"_a, "value_low"_a, "value_high"_a, "value_term"_a,
        "device"_a, "stream"_a, "Enqueue the per-row mask scan on `stream`.");
  m.def("cuda_token_outputs", &token_outputs_py, py::kw_only(), "n"_a, "length"_a, "response_mask"_a,
        "action_mask"_a, "subgoal_mask"_a, "switch_mask"_a, "value_mask_low"_a, "value_mask_high"_a,
        "value_mask_term"_a, "is_boundary"_a, "adv_low"_a, "adv_high"_a, "adv_term"_a, "ret_low"_a, "ret_high"_a,
        "ret_term"_a, "high_on_subgoal"_a, "high_on_switch"_a, "term_on_switch"_a, "advantages"_a,
        "advantages_low"_a, "advantages_high"_a, "advantages_term"_a, "returns_low"_a, "returns_high"_a,
        "returns_term"_a, "lo_mask"_a, "hi_mask"_a, "term_mask"_a, "loss_mask"_a, "workspace"_a,
        "workspace_bytes"_a, "device"_a, "stream"_a,
        "Enqueue the broadcast of per-turn results onto token masks (docs/semantics.md 4.6) on `stream`; writes the outputs "
        "whose pointer is non-zero.");
}

}  // namespace hiper::bindings

#else

namespace hiper::bindings {
void register_cuda_token_ops(pybind11::module_&) {}
}  // namespace hiper::bindings

#endif
