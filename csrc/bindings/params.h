// Checks of the scalar HAE parameters, shared by the CPU and CUDA bindings.
#pragma once

#include <pybind11/pybind11.h>

#include <string>

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

}  // namespace hiper::bindings
