// Masked mean / population std over per-turn advantages, in double (two passes: the
// one-pass sum-of-squares formula loses digits when the mean is large). Sums use four
// interleaved accumulators in a fixed order: deterministic, and four times shorter
// dependency chains than one running sum (the compiler may not reorder float adds).
// Masks enter as 0/1 weights, never as branches: advantages are credited to an irregular
// subset of turns, which would make branches unpredictable.
#include <cmath>

#include "cpu/launchers.h"

namespace hiper::cpu {
namespace {

// sum_i w_i * f(x_i) with w_i = include[i] != 0 (or 1 without a mask).
template <typename F>
double weighted_sum(index_t n, const float* x, const flag_t* include, F f) {
  double acc[4] = {0.0, 0.0, 0.0, 0.0};
  index_t i = 0;
  if (include == nullptr) {
    for (; i + 4 <= n; i += 4)
      for (int k = 0; k < 4; ++k) acc[k] += f(x[i + k]);
    for (; i < n; ++i) acc[0] += f(x[i]);
  } else {
    for (; i + 4 <= n; i += 4)
      for (int k = 0; k < 4; ++k) acc[k] += static_cast<double>(bit(include[i + k])) * f(x[i + k]);
    for (; i < n; ++i) acc[0] += static_cast<double>(bit(include[i])) * f(x[i]);
  }
  return (acc[0] + acc[1]) + (acc[2] + acc[3]);
}

}  // namespace

Moments masked_moments(index_t n, const float* x, const flag_t* include) {
  Moments m;
  index_t count = n;
  if (include != nullptr) {
    count = 0;
    for (index_t i = 0; i < n; ++i) count += bit(include[i]);
  }
  m.count = count;
  if (count == 0) return m;
  m.mean = weighted_sum(n, x, include, [](float v) { return static_cast<double>(v); }) / static_cast<double>(count);
  const double mean = m.mean;
  const double sq = weighted_sum(n, x, include, [mean](float v) {
    const double d = v - mean;
    return d * d;
  });
  m.std = std::sqrt(sq / static_cast<double>(count));
  return m;
}

void normalize(index_t n, const float* x, const flag_t* include, const Moments& m, double eps, float* out) {
  const double inv_scale = 1.0 / (m.std + eps);
  if (include == nullptr) {
    for (index_t i = 0; i < n; ++i) out[i] = normalize_value(x[i], m.mean, inv_scale);
    return;
  }
  for (index_t i = 0; i < n; ++i) {
    // Blend instead of select (no branch): w is exactly 0 or 1, so this returns z or x[i]
    // (up to the sign of a zero).
    const float w = static_cast<float>(bit(include[i]));
    const float z = normalize_value(x[i], m.mean, inv_scale);
    out[i] = w * z + (1.0f - w) * x[i];
  }
}

}  // namespace hiper::cpu
