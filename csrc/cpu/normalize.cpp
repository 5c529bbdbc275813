// Masked mean / population std over per-turn advantages, in double (two passes: the
// one-pass sum-of-squares formula loses digits when the mean is large). Sums use four
// interleaved accumulators in a fixed order: deterministic, and four times shorter
// dependency chains than a single running sum (the compiler may not reorder float adds).
#include <cmath>

#include "cpu/launchers.h"

namespace hiper::cpu {
namespace {

template <typename Term>
double sum4(index_t n, Term term) {
  double acc[4] = {0.0, 0.0, 0.0, 0.0};
  index_t i = 0;
  for (; i + 4 <= n; i += 4)
    for (int k = 0; k < 4; ++k) acc[k] += term(i + k);
  for (; i < n; ++i) acc[0] += term(i);
  return (acc[0] + acc[1]) + (acc[2] + acc[3]);
}

}  // namespace

Moments masked_moments(index_t n, const float* x, const flag_t* include) {
  auto weight = [include](index_t i) { return include == nullptr || include[i] != 0 ? 1.0 : 0.0; };
  Moments m;
  index_t count = 0;
  for (index_t i = 0; i < n; ++i) count += include == nullptr || include[i] != 0;
  m.count = count;
  if (count == 0) return m;
  m.mean = sum4(n, [&](index_t i) { return weight(i) * x[i]; }) / static_cast<double>(count);
  const double sq = sum4(n, [&](index_t i) {
    const double d = x[i] - m.mean;
    return weight(i) * d * d;
  });
  m.std = std::sqrt(sq / static_cast<double>(count));
  return m;
}

void normalize(index_t n, const float* x, const flag_t* include, const Moments& m, double eps, float* out) {
  const double inv_scale = 1.0 / (m.std + eps);
  for (index_t i = 0; i < n; ++i) {
    const float z = normalize_value(x[i], m.mean, inv_scale);
    out[i] = (include == nullptr || include[i] != 0) ? z : x[i];
  }
}

}  // namespace hiper::cpu
