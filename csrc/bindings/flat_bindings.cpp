// Bindings of the flat baselines (docs/semantics.md §8): turn- and token-level GAE, episode totals,
// group statistics (GRPO / RLOO / GiGPO) and verl's masked whitening.
#include <cmath>
#include <stdexcept>
#include <string>

#include "bindings/arrays.h"
#include "bindings/ops.h"
#include "bindings/params.h"
#include "bindings/threads.h"
#include "cpu/launchers.h"

namespace hiper::bindings {
namespace {

void turn_gae_py(const Layout& layout, const py::object& rewards, const py::object& dones, const py::object& values,
                 double gamma, double lam, bool bootstrap_truncated, const py::object& advantages,
                 const py::object& returns) {
  const py::ssize_t n = static_cast<py::ssize_t>(layout.order.size());
  py::array r = checked_array(rewards, "rewards", Kind::kFloat32, {-1});
  check_layout_rows(layout, r.shape(0), "rewards");
  py::array d = checked_array(dones, "dones", Kind::kFlag, {n});
  py::array v = checked_array(values, "values", Kind::kFloat32, {n}, true);
  py::array a = checked_array(advantages, "advantages", Kind::kFloat32, {n}, false, true);
  py::array ret = checked_array(returns, "returns", Kind::kFloat32, {n}, false, true);
  check_finite(r, "rewards");
  check_finite(v, "values");
  check_unit(gamma, "gamma");
  check_unit(lam, "lam");
  TurnGAEParams p;
  p.layout = layout.view();
  p.rewards = in_ptr<float>(r);
  p.dones = in_ptr<flag_t>(d);
  p.values = in_ptr<float>(v);
  p.gamma = gamma;
  p.lam = lam;
  p.bootstrap_truncated = bootstrap_truncated;
  p.advantages = out_ptr<float>(a);
  p.returns = out_ptr<float>(ret);
  ReleaseGil release;
  cpu::turn_gae(p);
}

void token_gae_py(const py::object& rewards, const py::object& values, const py::object& response_mask, double gamma,
                  double lam, const py::object& advantages, const py::object& returns) {
  py::array r = checked_array(rewards, "token_rewards", Kind::kFloat32, {-1, -1});
  const auto n = r.shape(0), L = r.shape(1);
  py::array v = checked_array(values, "values", Kind::kFloat32, {n, L});
  py::array m = checked_array(response_mask, "response_mask", Kind::kFlag, {n, L});
  py::array a = checked_array(advantages, "advantages", Kind::kFloat32, {n, L}, false, true);
  py::array ret = checked_array(returns, "returns", Kind::kFloat32, {n, L}, false, true);
  check_finite(r, "token_rewards");
  check_finite(v, "values");
  check_unit(gamma, "gamma");
  check_unit(lam, "lam");
  TokenGAEParams p;
  p.num_rows = n;
  p.length = L;
  p.rewards = in_ptr<float>(r);
  p.values = in_ptr<float>(v);
  p.response_mask = in_ptr<flag_t>(m);
  p.gamma = gamma;
  p.lam = lam;
  p.advantages = out_ptr<float>(a);
  p.returns = out_ptr<float>(ret);
  ReleaseGil release;
  cpu::token_gae(p);
}

void episode_totals_py(const Layout& layout, const py::object& rewards, const py::object& out) {
  py::array r = checked_array(rewards, "rewards", Kind::kFloat32, {-1});
  check_layout_rows(layout, r.shape(0), "rewards");
  py::array o = checked_array(out, "out", Kind::kFloat32, {r.shape(0)}, false, true);
  check_finite(r, "rewards");
  EpisodeTotalParams p;
  p.layout = layout.view();
  p.rewards = in_ptr<float>(r);
  p.totals = out_ptr<float>(o);
  ReleaseGil release;
  cpu::episode_totals(p);
}

GroupMode parse_group_mode(const std::string& mode) {
  if (mode == "zscore") return GroupMode::kZScore;
  if (mode == "center") return GroupMode::kCenter;
  if (mode == "leave_one_out") return GroupMode::kLeaveOneOut;
  throw py::value_error("mode: expected 'zscore', 'center' or 'leave_one_out', got '" + mode + "'");
}

SingleSample parse_single_sample(const std::string& rule) {
  if (rule == "keep") return SingleSample::kMeanZero;
  if (rule == "zero") return SingleSample::kOwnScore;
  throw py::value_error("singleton: expected 'keep' or 'zero', got '" + rule + "'");
}

void group_normalize_py(const py::object& scores, const py::object& groups, int64_t num_groups,
                        const py::object& samples, const std::string& mode, const std::string& singleton, double eps,
                        const py::object& out) {
  py::array s = checked_array(scores, "scores", Kind::kFloat32, {-1});
  const auto n = s.shape(0);
  py::array g = checked_array(groups, "groups", Kind::kInt64, {n});
  py::array smp = checked_array(samples, "samples", Kind::kFlag, {n}, true);
  py::array o = checked_array(out, "out", Kind::kFloat32, {n}, false, true);
  check_finite(s, "scores");
  if (num_groups < 0) throw py::value_error("num_groups: must be >= 0");
  if (!(eps >= 0.0)) throw py::value_error("eps: must be >= 0");
  const int64_t* gid = in_ptr<int64_t>(g);
  for (py::ssize_t i = 0; i < n; ++i)
    if (gid[i] < 0 || gid[i] >= num_groups)
      throw py::value_error("groups: id " + std::to_string(gid[i]) + " at row " + std::to_string(i) +
                            " is outside [0, " + std::to_string(num_groups) + ")");
  GroupStatsParams p;
  p.num_rows = n;
  p.num_groups = num_groups;
  p.scores = in_ptr<float>(s);
  p.groups = gid;
  p.samples = in_ptr<flag_t>(smp);
  p.mode = parse_group_mode(mode);
  p.single_sample = parse_single_sample(singleton);
  p.eps = eps;
  p.advantages = out_ptr<float>(o);
  ReleaseGil release;
  cpu::group_normalize(p);
}

// verl's masked_whiten: mean and unbiased variance over the mask, (x - mean) / sqrt(var + eps).
// Returns (count, mean, var). Fewer than two masked elements give variance 0.
py::tuple whiten_py(const py::object& x, const py::object& mask, double eps, const py::object& out) {
  py::array a = checked_array(x, "x", Kind::kFloat32, {-1, -1});
  const auto n = a.shape(0), L = a.shape(1);
  py::array m = checked_array(mask, "mask", Kind::kFlag, {n, L});
  py::array o = checked_array(out, "out", Kind::kFloat32, {n, L}, false, true);
  check_finite(a, "x");
  if (!(eps > 0.0)) throw py::value_error("eps: must be > 0");
  Moments mo;
  double var = 0.0;
  {
    ReleaseGil release;
    mo = cpu::masked_moments(n * L, in_ptr<float>(a), in_ptr<flag_t>(m));
    if (mo.count > 1) var = mo.std * mo.std * static_cast<double>(mo.count) / static_cast<double>(mo.count - 1);
    cpu::whiten(n * L, in_ptr<float>(a), in_ptr<flag_t>(m), mo.mean, 1.0 / std::sqrt(var + eps), out_ptr<float>(o));
  }
  return py::make_tuple(mo.count, mo.mean, var);
}

}  // namespace

void register_flat_ops(py::module_& m) {
  using namespace pybind11::literals;
  m.def("turn_gae", &turn_gae_py, "layout"_a, "rewards"_a, "dones"_a, "values"_a, "gamma"_a, "lam"_a,
        "bootstrap_truncated"_a, "advantages"_a, "returns"_a, "GAE over the turns of each trajectory (docs/semantics.md 8).");
  m.def("token_gae", &token_gae_py, "token_rewards"_a, "values"_a, "response_mask"_a, "gamma"_a, "lam"_a,
        "advantages"_a, "returns"_a, "verl's token-level GAE over each response row, masked tokens skipped.");
  m.def("episode_totals", &episode_totals_py, "layout"_a, "rewards"_a, "out"_a,
        "Every row receives the sum of its trajectory's rewards.");
  m.def("group_normalize", &group_normalize_py, "scores"_a, "groups"_a, "num_groups"_a, "samples"_a, "mode"_a,
        "singleton"_a, "eps"_a, "out"_a,
        "Per-group centring / z-score / leave-one-out of per-row scores (GRPO, RLOO, GiGPO). singleton: a group with "
        "one sample keeps its score ('keep': mean 0) or gets 0 ('zero': its own score is the mean).");
  m.def("whiten", &whiten_py, "x"_a, "mask"_a, "eps"_a, "out"_a,
        "verl's masked_whiten into `out` (0 outside the mask). Returns (count, mean, unbiased var).");
}

}  // namespace hiper::bindings
