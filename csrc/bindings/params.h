// Checks of the scalar parameters and layout row counts, and the reading of a HAEConfig,
// shared by the bindings.
#pragma once

#include <pybind11/pybind11.h>

#include <string>

#include "hiper/layout.h"
#include "hiper/shaping.h"

namespace hiper::bindings {

inline KeepPenaltyMode parse_keep_mode(const std::string& mode) {
  if (mode == "fixed") return KeepPenaltyMode::kFixed;
  if (mode == "normalized") return KeepPenaltyMode::kNormalized;
  throw pybind11::value_error("keep_penalty_mode: expected 'fixed' or 'normalized', got '" + mode + "'");
}

// gamma and the lambdas.
inline void check_unit(double v, const char* name) {
  if (!(v >= 0.0 && v <= 1.0)) throw pybind11::value_error(std::string(name) + ": expected a number in [0, 1]");
}

// A per-turn array must have one row per row of the layout it is used with.
inline void check_layout_rows(const Layout& layout, pybind11::ssize_t n, const char* name) {
  if (static_cast<pybind11::ssize_t>(layout.order.size()) != n)
    throw pybind11::value_error(std::string(name) + ": has " + std::to_string(n) + " rows but the layout has " +
                                std::to_string(layout.order.size()));
}

// The fields of a Python hiper.HAEConfig that the per-turn pipeline reads (docs/semantics.md
// §4.1, §4.3-§4.5, §4.7). The CPU and CUDA pipeline bindings take the config object whole and
// read it here, so the list of fields that cross into C++ is written once, not as nine scalar
// arguments of each binding that a caller has to pass in the right order.
struct HAEConfigFields {
  double keep_penalty = 0.0;
  KeepPenaltyMode keep_penalty_mode = KeepPenaltyMode::kFixed;
  double invalid_action_penalty_coef = 0.0;
  double keep_consistency_penalty = 0.0;
  double gamma = 1.0;
  double lam_turn = 1.0;
  double lam_seg = 0.95;
  bool bootstrap_truncated = false;
  bool normalize = false;  // HAEConfig.norm_adv
};

namespace detail {
template <typename T>
T config_field(const pybind11::handle& config, const char* name, const char* expected) {
  if (!pybind11::hasattr(config, name))
    throw pybind11::type_error(std::string("config: expected a hiper.HAEConfig, got ") +
                               Py_TYPE(config.ptr())->tp_name +
                               " without '" + name + "'");
  try {
    return config.attr(name).cast<T>();
  } catch (const pybind11::cast_error&) {
    throw pybind11::type_error(std::string("config.") + name + ": expected " + expected + ", got " +
                               std::string(pybind11::repr(config.attr(name))));
  }
}
}  // namespace detail

// Reads `config` (a hiper.HAEConfig, or any object with its attributes). The ranges of gamma and
// the lambdas are checked where the HAE parameters are built, as for the standalone ops.
inline HAEConfigFields read_hae_config(const pybind11::handle& config) {
  using detail::config_field;
  HAEConfigFields c;
  c.keep_penalty = config_field<double>(config, "keep_penalty", "a number");
  c.keep_penalty_mode = parse_keep_mode(config_field<std::string>(config, "keep_penalty_mode", "a string"));
  c.invalid_action_penalty_coef = config_field<double>(config, "invalid_action_penalty_coef", "a number");
  c.keep_consistency_penalty = config_field<double>(config, "keep_consistency_penalty", "a number");
  c.gamma = config_field<double>(config, "gamma", "a number");
  c.lam_turn = config_field<double>(config, "lam_turn", "a number");
  c.lam_seg = config_field<double>(config, "lam_seg", "a number");
  c.bootstrap_truncated = config_field<bool>(config, "bootstrap_truncated", "a bool");
  c.normalize = config_field<bool>(config, "norm_adv", "a bool");
  return c;
}

}  // namespace hiper::bindings
