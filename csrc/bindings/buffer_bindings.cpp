// Binding of the trajectory buffer.
#include <cstdint>
#include <memory>
#include <stdexcept>

#include "bindings/arrays.h"
#include "bindings/ops.h"
#include "bindings/threads.h"
#include "cpu/launchers.h"
#include "hiper/buffer.h"

namespace hiper::bindings {
namespace {

void append_py(TrajectoryBuffer& buf, const py::object& env_ids, const py::object& prompt_tokens,
               const py::object& prompt_mask, const py::object& response_tokens, const py::object& response_mask,
               const py::object& rewards, const py::object& dones, const py::object& valid,
               const py::object& is_new_subgoal) {
  py::array env = checked_array(env_ids, "env_ids", Kind::kInt64, {-1});
  const auto k = env.shape(0);
  py::array pt = checked_array(prompt_tokens, "prompt_tokens", Kind::kInt64, {k, -1});
  py::array pm = checked_array(prompt_mask, "prompt_mask", Kind::kFlag, {k, pt.shape(1)});
  py::array rt = checked_array(response_tokens, "response_tokens", Kind::kInt64, {k, -1});
  py::array rm = checked_array(response_mask, "response_mask", Kind::kFlag, {k, rt.shape(1)});
  py::array r = checked_array(rewards, "rewards", Kind::kFloat32, {k});
  py::array d = checked_array(dones, "dones", Kind::kFlag, {k});
  py::array v = checked_array(valid, "valid", Kind::kFlag, {k}, true);
  py::array s = checked_array(is_new_subgoal, "is_new_subgoal", Kind::kFlag, {k}, true);
  check_finite(r, "rewards");
  ReleaseGil release;
  buf.append(k, in_ptr<int64_t>(env), in_ptr<int64_t>(pt), in_ptr<flag_t>(pm), pt.shape(1), in_ptr<int64_t>(rt),
             in_ptr<flag_t>(rm), rt.shape(1), in_ptr<float>(r), in_ptr<flag_t>(d), in_ptr<flag_t>(v),
             in_ptr<flag_t>(s));
}

py::dict pack_py(const TrajectoryBuffer& buf, py::ssize_t prompt_width, py::ssize_t response_width, int64_t pad_id) {
  const py::ssize_t n = buf.num_turns();
  if (prompt_width < 0) prompt_width = buf.max_prompt_len();
  if (response_width < 0) response_width = buf.max_response_len();
  if (prompt_width < buf.max_prompt_len())
    throw py::value_error("max_prompt_length: " + std::to_string(prompt_width) + " is shorter than the longest prompt (" +
                          std::to_string(buf.max_prompt_len()) + " tokens)");
  if (response_width < buf.max_response_len())
    throw py::value_error("max_response_length: " + std::to_string(response_width) +
                          " is shorter than the longest response (" + std::to_string(buf.max_response_len()) +
                          " tokens)");
  const py::ssize_t P = prompt_width, R = response_width;
  py::array_t<int64_t> prompts({n, P}), responses({n, R}), input_ids({n, P + R});
  py::array_t<bool> prompt_mask({n, P}), response_mask({n, R}), attention_mask({n, P + R});
  py::array_t<int64_t> env_ids(n), turn_idx(n), traj_offsets(buf.num_envs() + 1);
  py::array_t<float> rewards(n);
  py::array_t<bool> dones(n), valid(n), is_new(n);
  PackParams p;
  p.rows = n;
  p.prompt_width = P;
  p.response_width = R;
  p.pad_id = pad_id;
  p.prompts = prompts.mutable_data();
  p.prompt_mask = reinterpret_cast<flag_t*>(prompt_mask.mutable_data());
  p.responses = responses.mutable_data();
  p.response_mask = reinterpret_cast<flag_t*>(response_mask.mutable_data());
  p.input_ids = input_ids.mutable_data();
  p.attention_mask = reinterpret_cast<flag_t*>(attention_mask.mutable_data());
  p.env_ids = env_ids.mutable_data();
  p.turn_idx = turn_idx.mutable_data();
  p.rewards = rewards.mutable_data();
  p.dones = reinterpret_cast<flag_t*>(dones.mutable_data());
  p.valid = reinterpret_cast<flag_t*>(valid.mutable_data());
  p.is_new_subgoal = reinterpret_cast<flag_t*>(is_new.mutable_data());
  p.traj_offsets = traj_offsets.mutable_data();
  {
    ReleaseGil release;
    buf.pack(p);
  }
  py::dict out;
  out["prompts"] = prompts;
  out["prompt_mask"] = prompt_mask;
  out["responses"] = responses;
  out["response_mask"] = response_mask;
  out["input_ids"] = input_ids;
  out["attention_mask"] = attention_mask;
  out["env_ids"] = env_ids;
  out["turn_idx"] = turn_idx;
  out["rewards"] = rewards;
  out["dones"] = dones;
  out["is_action_valid"] = valid;
  out["is_new_subgoal"] = is_new;
  out["traj_offsets"] = traj_offsets;
  return out;
}

// The host twin of cuda_pack_rows, with its keywords: integer addresses of host memory
// (tensor.data_ptr()), checked by hiper/buffer.py as it checks device ones.
void pack_rows_py(index_t n, index_t prompt_width, index_t response_width, int64_t pad_id, std::uintptr_t sources,
                  std::uintptr_t prompts, std::uintptr_t prompt_mask, std::uintptr_t responses,
                  std::uintptr_t response_mask, std::uintptr_t input_ids, std::uintptr_t attention_mask) {
  if (n < 0 || prompt_width < 0 || response_width < 0) throw py::value_error("n, widths: expected sizes >= 0");
  PackRowsParams p;
  p.rows = n;
  p.prompt_width = prompt_width;
  p.response_width = response_width;
  p.pad_id = pad_id;
  p.sources = reinterpret_cast<const int64_t*>(sources);
  p.prompts = reinterpret_cast<int64_t*>(prompts);
  p.prompt_mask = reinterpret_cast<flag_t*>(prompt_mask);
  p.responses = reinterpret_cast<int64_t*>(responses);
  p.response_mask = reinterpret_cast<flag_t*>(response_mask);
  p.input_ids = reinterpret_cast<int64_t*>(input_ids);
  p.attention_mask = reinterpret_cast<flag_t*>(attention_mask);
  ReleaseGil release;
  cpu::pack_rows(p);
}

}  // namespace

void register_buffer(py::module_& m) {
  using namespace pybind11::literals;
  py::class_<TrajectoryBuffer, std::shared_ptr<TrajectoryBuffer>>(m, "TrajectoryBuffer")
      .def(py::init<index_t>(), "num_envs"_a)
      .def_property_readonly("num_envs", &TrajectoryBuffer::num_envs)
      .def_property_readonly("num_turns", &TrajectoryBuffer::num_turns)
      .def_property_readonly("max_prompt_len", &TrajectoryBuffer::max_prompt_len)
      .def_property_readonly("max_response_len", &TrajectoryBuffer::max_response_len)
      .def("turns_of", &TrajectoryBuffer::turns_of, "env"_a)
      .def("finished", &TrajectoryBuffer::finished, "env"_a)
      .def("append", &append_py, "env_ids"_a, "prompt_tokens"_a, "prompt_mask"_a, "response_tokens"_a,
           "response_mask"_a, "rewards"_a, "dones"_a, "valid"_a = py::none(), "is_new_subgoal"_a = py::none())
      .def("pack", &pack_py, "prompt_width"_a = -1, "response_width"_a = -1, "pad_id"_a = 0)
      .def("clear", &TrajectoryBuffer::clear);
  m.def("pack_rows", &pack_rows_py, py::kw_only(), "n"_a, "prompt_width"_a, "response_width"_a, "pad_id"_a,
        "sources"_a, "prompts"_a, "prompt_mask"_a, "responses"_a, "response_mask"_a, "input_ids"_a,
        "attention_mask"_a,
        "Host twin of cuda_pack_rows (tests): pack token rows kept as appended, given their addresses.");
}

}  // namespace hiper::bindings
