// Advantage normalisation over turns (SPEC §4.7).
//
// Statistics over the rows flagged in `include` (each turn counted once, not per token):
// mean and population standard deviation; x <- (x - mean) / (std + eps) on those rows.
// Rows outside `include` are left unchanged. With no included row nothing changes.
#pragma once

#include "hiper/common.h"

namespace hiper {

struct Moments {
  index_t count = 0;
  double mean = 0.0;
  double std = 0.0;
};

HIPER_HOST_DEVICE float normalize_value(float x, const Moments& m, double eps) {
  return static_cast<float>((static_cast<double>(x) - m.mean) / (m.std + eps));
}

}  // namespace hiper
