// Masked mean / population std over per-turn advantages, in double (two passes: the
// one-pass sum-of-squares formula loses digits when the mean is large).
#include <cmath>

#include "cpu/launchers.h"

namespace hiper::cpu {

Moments masked_moments(index_t n, const float* x, const flag_t* include) {
  Moments m;
  double sum = 0.0;
  for (index_t i = 0; i < n; ++i) {
    if (include != nullptr && include[i] == 0) continue;
    sum += x[i];
    ++m.count;
  }
  if (m.count == 0) return m;
  m.mean = sum / static_cast<double>(m.count);
  double sq = 0.0;
  for (index_t i = 0; i < n; ++i) {
    if (include != nullptr && include[i] == 0) continue;
    const double d = x[i] - m.mean;
    sq += d * d;
  }
  m.std = std::sqrt(sq / static_cast<double>(m.count));
  return m;
}

void normalize(index_t n, const float* x, const flag_t* include, const Moments& m, double eps, float* out) {
  for (index_t i = 0; i < n; ++i)
    out[i] = (include == nullptr || include[i] != 0) ? normalize_value(x[i], m, eps) : x[i];
}

}  // namespace hiper::cpu
