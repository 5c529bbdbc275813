// Host twin of the device buffer's pack (csrc/cuda/pack_rows.cu): hiper/pack_rows.h's
// functions, a row per call. Used when the device path's Python code runs on host tensors
// (tests); the host buffer itself packs from its arenas (buffer.cpp).
#include "cpu/launchers.h"
#include "cpu/parallel.h"

namespace hiper::cpu {

void pack_rows(const PackRowsParams& p) {
  parallel_for(p.rows, p.rows * (p.prompt_width + p.response_width), [&](index_t i) { pack_row(p, i); });
}

}  // namespace hiper::cpu
