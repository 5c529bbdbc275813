// CUDA bindings of the per-turn ops: reward shaping, HAE, the pipeline of both with
// normalisation, subgoal-consistency flags and standalone normalisation. Scalar parameters
// are checked here as the CPU bindings check them (bindings/params.h); arrays in Python.
#include "bindings/ops.h"

#if defined(HIPER_WITH_CUDA)
#include <string>

#include "bindings/cuda_args.h"
#include "bindings/params.h"

namespace hiper::bindings {
namespace {

ShapingParams shaping_params(const DeviceLayout& lay, ptr_t rewards, ptr_t is_new_subgoal, ptr_t is_action_valid,
                             ptr_t subgoal_changed, double keep_penalty, KeepPenaltyMode keep_penalty_mode,
                             double invalid_action_penalty_coef, double keep_consistency_penalty, ptr_t shaped) {
  ShapingParams p;
  p.layout = lay.view;
  p.rewards = in<float>(rewards);
  p.is_new_subgoal = in<flag_t>(is_new_subgoal);
  p.is_action_valid = in<float>(is_action_valid);
  p.subgoal_changed = in<flag_t>(subgoal_changed);
  p.keep_penalty = keep_penalty;
  p.keep_penalty_mode = keep_penalty_mode;
  p.invalid_action_penalty_coef = invalid_action_penalty_coef;
  p.keep_consistency_penalty = keep_consistency_penalty;
  p.shaped = out<float>(shaped);
  return p;
}

HAEParams hae_params(const DeviceLayout& lay, ptr_t rewards, ptr_t dones, ptr_t v_low, ptr_t v_high, ptr_t v_term,
                     double gamma, double lam_turn, double lam_seg, bool bootstrap_truncated, ptr_t adv_low,
                     ptr_t ret_low, ptr_t adv_high, ptr_t ret_high, ptr_t adv_term, ptr_t ret_term) {
  check_unit(gamma, "gamma");
  check_unit(lam_turn, "lam_turn");
  check_unit(lam_seg, "lam_seg");
  HAEParams p;
  p.layout = lay.view;
  p.rewards = in<float>(rewards);
  p.dones = in<flag_t>(dones);
  p.v_low = in<float>(v_low);
  p.v_high = in<float>(v_high);
  p.v_term = in<float>(v_term);
  p.gamma = gamma;
  p.lam_turn = lam_turn;
  p.lam_seg = lam_seg;
  p.bootstrap_truncated = bootstrap_truncated;
  p.adv_low = out<float>(adv_low);
  p.ret_low = out<float>(ret_low);
  p.adv_high = out<float>(adv_high);
  p.ret_high = out<float>(ret_high);
  p.adv_term = out<float>(adv_term);
  p.ret_term = out<float>(ret_term);
  return p;
}

void shape_rewards_py(const LayoutHandle& layout, ptr_t rewards, ptr_t is_new_subgoal, ptr_t is_action_valid,
                      ptr_t subgoal_changed, double keep_penalty, const std::string& keep_penalty_mode,
                      double invalid_action_penalty_coef, double keep_consistency_penalty, ptr_t out_ptr, int device,
                      ptr_t stream) {
  const DeviceLayout lay = device_layout(layout);
  const ShapingParams p =
      shaping_params(lay, rewards, is_new_subgoal, is_action_valid, subgoal_changed, keep_penalty,
                     parse_keep_mode(keep_penalty_mode), invalid_action_penalty_coef, keep_consistency_penalty,
                     out_ptr);
  on_device(device, [&] { cuda::shape_rewards(p, lay.num_trajs, stream); });
}

void hae_py(const LayoutHandle& layout, ptr_t rewards, ptr_t dones, ptr_t v_low, ptr_t v_high, ptr_t v_term,
            double gamma, double lam_turn, double lam_seg, bool bootstrap_truncated, ptr_t adv_low, ptr_t ret_low,
            ptr_t adv_high, ptr_t ret_high, ptr_t adv_term, ptr_t ret_term, int device, ptr_t stream) {
  const DeviceLayout lay = device_layout(layout);
  const HAEParams p = hae_params(lay, rewards, dones, v_low, v_high, v_term, gamma, lam_turn, lam_seg,
                                 bootstrap_truncated, adv_low, ret_low, adv_high, ret_high, adv_term, ret_term);
  on_device(device, [&] { cuda::hae(p, lay.num_trajs, stream); });
}

void hae_pipeline_py(const LayoutHandle& layout, const py::object& config, ptr_t rewards, ptr_t is_new_subgoal,
                     ptr_t is_action_valid, ptr_t subgoal_changed, ptr_t dones, ptr_t v_low, ptr_t v_high,
                     ptr_t v_term, ptr_t credited_low, ptr_t credited_high, ptr_t credited_term, ptr_t shaped,
                     ptr_t adv_low, ptr_t ret_low, ptr_t adv_high, ptr_t ret_high, ptr_t adv_term, ptr_t ret_term,
                     ptr_t workspace, size_t workspace_bytes, int device, ptr_t stream) {
  const HAEConfigFields c = read_hae_config(config);
  const DeviceLayout lay = device_layout(layout);
  PipelineParams p;
  p.shaping = shaping_params(lay, rewards, is_new_subgoal, is_action_valid, subgoal_changed, c.keep_penalty,
                             c.keep_penalty_mode, c.invalid_action_penalty_coef, c.keep_consistency_penalty, shaped);
  p.hae = hae_params(lay, 0, dones, v_low, v_high, v_term, c.gamma, c.lam_turn, c.lam_seg, c.bootstrap_truncated,
                     adv_low, ret_low, adv_high, ret_high, adv_term, ret_term);
  p.normalize = c.normalize;
  p.credited_low = in<flag_t>(credited_low);
  p.credited_high = in<flag_t>(credited_high);
  p.credited_term = in<flag_t>(credited_term);
  p.is_boundary = lay.is_boundary;
  on_device(device, [&] {
    cuda::hae_pipeline(p, lay.num_trajs, reinterpret_cast<void*>(workspace), workspace_bytes, stream);
  });
}

void subgoal_changed_py(const LayoutHandle& layout, index_t length, ptr_t responses, int token_bytes,
                        ptr_t subgoal_mask, ptr_t response_mask, bool requires_both, ptr_t out_ptr, int device,
                        ptr_t stream) {
  if (token_bytes != 4 && token_bytes != 8) throw py::value_error("token_bytes: expected 4 or 8");
  const DeviceLayout lay = device_layout(layout);
  auto run = [&](auto token) {
    using token_t = decltype(token);
    ConsistencyParams<token_t> p;
    p.layout = lay.view;
    p.length = length;
    p.tokens = in<token_t>(responses);
    p.subgoal_mask = in<flag_t>(subgoal_mask);
    p.response_mask = in<flag_t>(response_mask);
    p.requires_both = requires_both;
    p.changed = out<flag_t>(out_ptr);
    on_device(device, [&] { cuda::subgoal_changed<token_t>(p, lay.position, stream); });
  };
  if (token_bytes == 8)
    run(int64_t{});
  else
    run(int32_t{});
}

void normalize_py(index_t n, ptr_t x, ptr_t include, double eps, ptr_t out_ptr, ptr_t workspace,
                  size_t workspace_bytes, int device, ptr_t stream) {
  if (!(eps >= 0.0)) throw py::value_error("eps: expected a number >= 0");
  cuda::NormalizeBatch b;
  b.count = 1;
  b.n = n;
  b.x[0] = in<float>(x);
  b.include[0] = in<flag_t>(include);
  b.out[0] = out<float>(out_ptr);
  on_device(device, [&] { cuda::normalize(b, eps, reinterpret_cast<void*>(workspace), workspace_bytes, stream); });
}

}  // namespace

void register_cuda_hae_ops(py::module_& m) {
  using namespace pybind11::literals;
  m.def(
      "cuda_pipeline_workspace_bytes",
      [](int device) { return on_device(device, [] { return cuda::pipeline_workspace_bytes(); }); }, py::kw_only(),
      "device"_a, "Device workspace (bytes) cuda_hae_pipeline needs.");
  m.def(
      "cuda_normalize_workspace_bytes",
      [](int device) { return on_device(device, [] { return cuda::normalize_workspace_bytes(); }); }, py::kw_only(),
      "device"_a, "Device workspace (bytes) cuda_normalize needs.");
  m.def("cuda_shape_rewards", &shape_rewards_py, py::kw_only(), "layout"_a, "rewards"_a, "is_new_subgoal"_a,
        "is_action_valid"_a, "subgoal_changed"_a, "keep_penalty"_a, "keep_penalty_mode"_a,
        "invalid_action_penalty_coef"_a, "keep_consistency_penalty"_a, "out"_a, "device"_a, "stream"_a,
        "Enqueue reward shaping (docs/semantics.md 4.1) on `stream`.");
  m.def("cuda_hae", &hae_py, py::kw_only(), "layout"_a, "rewards"_a, "dones"_a, "v_low"_a, "v_high"_a, "v_term"_a,
        "gamma"_a, "lam_turn"_a, "lam_seg"_a, "bootstrap_truncated"_a, "adv_low"_a, "ret_low"_a, "adv_high"_a,
        "ret_high"_a, "adv_term"_a, "ret_term"_a, "device"_a, "stream"_a,
        "Enqueue the HAE recurrences (docs/semantics.md 4.3-4.5) on `stream`.");
  m.def("cuda_hae_pipeline", &hae_pipeline_py, py::kw_only(), "layout"_a, "config"_a, "rewards"_a,
        "is_new_subgoal"_a, "is_action_valid"_a, "subgoal_changed"_a, "dones"_a, "v_low"_a, "v_high"_a, "v_term"_a,
        "credited_low"_a, "credited_high"_a, "credited_term"_a, "shaped"_a, "adv_low"_a, "ret_low"_a, "adv_high"_a,
        "ret_high"_a, "adv_term"_a, "ret_term"_a, "workspace"_a, "workspace_bytes"_a, "device"_a, "stream"_a,
        "Enqueue shaping, HAE and (if config.norm_adv) normalisation on `stream`, with the scalars read from "
        "`config` (a hiper.HAEConfig).");
  m.def("cuda_subgoal_changed", &subgoal_changed_py, py::kw_only(), "layout"_a, "length"_a, "responses"_a,
        "token_bytes"_a, "subgoal_mask"_a, "response_mask"_a, "requires_both"_a, "out"_a, "device"_a, "stream"_a,
        "Enqueue the per-turn subgoal-changed flags (docs/semantics.md 4.1.3) on `stream`.");
  m.def("cuda_normalize", &normalize_py, py::kw_only(), "n"_a, "x"_a, "include"_a, "eps"_a, "out"_a, "workspace"_a,
        "workspace_bytes"_a, "device"_a, "stream"_a,
        "Enqueue out = (x - mean) / (std + eps) over the included rows (x where none is) on `stream`.");
}

}  // namespace hiper::bindings

#else

namespace hiper::bindings {
void register_cuda_hae_ops(pybind11::module_&) {}
}  // namespace hiper::bindings

#endif
