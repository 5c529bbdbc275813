// Parallel loops of the CPU launchers, on a small thread pool of hiper's own (parallel.cpp).
//
// Why not OpenMP. A trainer's machine is rarely idle: environment workers and tokenizers keep
// its cores busy. An OpenMP loop ends in a barrier that every thread of its team must reach,
// so on a busy machine each loop waits until the scheduler has run every one of its threads,
// and GOMP's threads spin while they wait, taking cycles from the threads they wait for (the
// span masker ran up to ~30x slower beside two busy processes than on one thread). The remedy,
// OMP_WAIT_POLICY=passive, is read once, when libgomp is loaded; in a Python process that is
// whenever some other extension first loaded it, so an extension cannot rely on it.
//
// The pool here waits passively by design and never waits for a thread that has not started:
// a loop is cut into chunks that the calling thread and the workers take from a shared
// counter. The caller takes chunks too, so when the workers are slow to be scheduled it runs
// the whole loop itself, and at the end it waits only for chunks a worker has already begun.
// Idle workers sleep on a condition variable. On a busy machine a loop thus costs about what
// the serial loop costs (less when the workers get CPU time), plus one wake-up call.
//
// Loops with less than parallel_grain() elements of work run on the calling thread alone (see
// parallel.cpp for how the grain was measured).
#pragma once

#include <functional>

#include "hiper/common.h"

namespace hiper::cpu {

// Elements of work (each launcher states its loop's work in (N, L) elements or an equivalent)
// below which a loop stays on the calling thread. Settable for tests (to run the parallel
// path on small inputs) and for measuring the grain; the default is kParallelGrain.
constexpr index_t kParallelGrain = 1 << 16;
index_t parallel_grain();
void set_parallel_grain(index_t grain);

// Threads the loops may use, the calling thread included; >= 1. It starts at
// default_num_threads(), the number of CPUs this process may run on; the bindings set it
// (hiper.set_num_threads, or torch's count).
int num_threads();
void set_num_threads(int n);
int default_num_threads();

// Threads a loop over n items with `work` elements of work runs on: 1 below parallel_grain()
// or with fewer than two items, else min(num_threads(), n).
int loop_threads(index_t n, index_t work);

// fn(begin, end) over consecutive chunks covering [0, n), on up to loop_threads(n, work)
// threads. Chunks may run in any order and on any of those threads; fn must not throw
// across a chunk it has partly written (an exception is rethrown here once every thread
// has stopped). A loop started while the pool runs another (from another thread, or from
// inside a chunk) runs serially on its caller.
void parallel_for_ranges(index_t n, index_t work, const std::function<void(index_t, index_t)>& fn);

// fn(i) for every i in [0, n), as parallel_for_ranges splits it.
template <typename F>
void parallel_for(index_t n, index_t work, F&& fn) {
  if (loop_threads(n, work) <= 1) {
    for (index_t i = 0; i < n; ++i) fn(i);
    return;
  }
  parallel_for_ranges(n, work, [&fn](index_t begin, index_t end) {
    for (index_t i = begin; i < end; ++i) fn(i);
  });
}

}  // namespace hiper::cpu
