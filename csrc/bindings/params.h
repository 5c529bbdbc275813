// Checks of the scalar parameters and layout row counts, shared by the bindings.
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

}  // namespace hiper::bindings
