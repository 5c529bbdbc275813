// Advantage normalisation over turns (docs/semantics.md §4.7).
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

// (x - mean) / (std + eps), with the division hoisted: pass inv_scale = 1 / (std + eps).
// In double the product differs from the quotient by an ulp of double, far below float32.
HIPER_HOST_DEVICE float normalize_value(float x, double mean, double inv_scale) {
  return static_cast<float>((static_cast<double>(x) - mean) * inv_scale);
}

}  // namespace hiper
