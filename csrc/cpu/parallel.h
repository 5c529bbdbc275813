// A minimal parallel-for for the CPU launchers: OpenMP when the build has it and the
// work is large enough to pay for waking the threads, a plain loop otherwise.
#pragma once

#include "hiper/common.h"

namespace hiper::cpu {

// Below this many elements of work a launch stays on the calling thread.
constexpr index_t kParallelGrain = 1 << 15;

template <typename F>
void parallel_for(index_t n, index_t work, F&& fn) {
#if defined(HIPER_WITH_OPENMP)
  if (work >= kParallelGrain) {
#pragma omp parallel for schedule(static)
    for (index_t i = 0; i < n; ++i) fn(i);
    return;
  }
#endif
  for (index_t i = 0; i < n; ++i) fn(i);
}

}  // namespace hiper::cpu
