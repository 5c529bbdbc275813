// CPU launchers for the (N, L) passes: the per-row mask scan and the token-level outputs.
// These are bound by memory bandwidth, so rows are split over threads.
#include <vector>

#include "cpu/launchers.h"
#include "cpu/parallel.h"

namespace hiper::cpu {

void row_scan(const RowScanParams& p) {
  parallel_for(p.num_rows, p.num_rows * p.length / 4, [&](index_t i) { row_scan_row(p, i); });
}

void token_outputs(const TokenOutputParams& p) {
  const std::vector<flag_t> zero_row(static_cast<size_t>(p.length), 0);
  parallel_for(p.num_rows, p.num_rows * p.length,
               [&](index_t i) { token_outputs_span(p, zero_row.data(), i, 0, p.length); });
}

}  // namespace hiper::cpu
