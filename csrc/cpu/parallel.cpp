// The thread pool behind parallel_for (see parallel.h for why it is not OpenMP).
//
// One loop runs at a time. Its caller publishes it (the function, the item count, the chunk
// size, a fresh counter), wakes the workers and takes chunks itself; a worker that wakes while
// the loop is still open takes a seat and takes chunks too. When the counter passes the end
// the caller closes the loop (late workers find no seat and sleep again) and waits only for
// the workers seated in it. Every wait is on a condition variable: nothing spins.
//
// The grain (parallel.h), from two measurements on the 2-core development machine: a worker
// sleeping on a condition variable starts running 6 us (median) to 20 us (99th percentile)
// after the notify (a ping between two threads), and the loops handed here cost ~2 ns
// (token-level GAE) to ~3.5 ns (the span masker) per (N, L) element (`benchmarks/bench_load.py --grain-sweep`, which
// times both with every loop parallel, at 2^11 .. 2^20 elements). At 2^16 elements a loop
// runs 130-230 us on one thread, so a worker that starts within ~20 us can take close to its
// share; below, the gain shrinks towards the wake-up cost and is not worth a context switch
// on a machine that may be busy. (That machine was never idle while measuring: a second
// thread won only some of the time above 2^16 elements, and never below.)
#include "cpu/parallel.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <exception>
#include <mutex>
#include <system_error>
#include <thread>
#include <utility>

#if defined(__linux__)
#include <sched.h>
#endif
#if defined(__unix__) || defined(__APPLE__)
#include <pthread.h>
#endif

namespace hiper::cpu {
namespace {

// Chunks per thread: enough that a worker scheduled late (or preempted) leaves work for the
// others to balance, few enough that taking a chunk (one atomic add) stays negligible.
constexpr index_t kChunksPerThread = 8;

int available_cpus() {
#if defined(__linux__)
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) return std::max(1, CPU_COUNT(&set));
#endif
  return std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
}

std::atomic<int>& thread_setting() {
  static std::atomic<int> threads{default_num_threads()};
  return threads;
}

std::atomic<index_t> g_grain{kParallelGrain};

using RangeFn = std::function<void(index_t, index_t)>;

// Set while this thread runs a chunk: a loop started from inside one runs serially (the
// pool is busy with the outer loop, whose caller may be this very thread).
thread_local bool t_in_chunk = false;

class ThreadPool {
 public:
  // Runs fn over [0, n) in chunks on the caller and up to `helpers` workers.
  void run(index_t n, index_t chunk, int helpers, const RangeFn& fn) {
    std::unique_lock<std::mutex> one_loop(run_mutex_, std::defer_lock);
    if (t_in_chunk || !one_loop.try_lock()) {  // the pool is busy with another loop: this one runs here
      fn(0, n);
      return;
    }
    start_workers(helpers);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      fn_ = &fn;
      n_ = n;
      chunk_ = chunk;
      next_.store(0, std::memory_order_relaxed);
      seats_ = helpers;
      ++generation_;
    }
    wake_.notify_all();
    take_chunks(fn);
    std::unique_lock<std::mutex> lock(mutex_);
    fn_ = nullptr;  // closed: a worker waking from now on finds no seat
    seats_ = 0;
    done_.wait(lock, [this] { return seated_ == 0; });
    if (error_ != nullptr) std::rethrow_exception(std::exchange(error_, nullptr));
  }

 private:
  void take_chunks(const RangeFn& fn) {
    t_in_chunk = true;
    try {
      for (;;) {
        const index_t begin = next_.fetch_add(chunk_, std::memory_order_relaxed);
        if (begin >= n_) break;
        fn(begin, std::min(begin + chunk_, n_));
      }
    } catch (...) {
      std::lock_guard<std::mutex> lock(mutex_);
      if (error_ == nullptr) error_ = std::current_exception();
      next_.store(n_, std::memory_order_relaxed);  // the others take no further chunk
    }
    t_in_chunk = false;
  }

  // Workers are started on first need and never stopped (the pool lives as long as the
  // process, see pool()); a lower thread count leaves the extra ones asleep.
  void start_workers(int count) {
    try {
      for (; workers_ < count; ++workers_) std::thread([this] { work(); }).detach();
    } catch (const std::system_error&) {
      // No more threads to be had (a process or container limit): the loops run on the
      // workers started so far, or on their caller alone.
    }
  }

  void work() {
    std::unique_lock<std::mutex> lock(mutex_);
    unsigned long long seen = generation_;
    for (;;) {
      wake_.wait(lock, [&] { return generation_ != seen; });
      seen = generation_;
      if (fn_ == nullptr || seats_ == 0) continue;  // too late for this loop
      --seats_;
      ++seated_;
      const RangeFn& fn = *fn_;
      lock.unlock();
      take_chunks(fn);
      lock.lock();
      if (--seated_ == 0) done_.notify_one();
    }
  }

  std::mutex run_mutex_;  // held by the caller of the running loop
  std::mutex mutex_;      // guards everything below but next_
  std::condition_variable wake_, done_;
  int workers_ = 0;                    // started so far (guarded by run_mutex_)
  unsigned long long generation_ = 0;  // one per loop
  const RangeFn* fn_ = nullptr;        // the open loop, or null
  index_t n_ = 0, chunk_ = 1;
  std::atomic<index_t> next_{0};       // first item of the next chunk
  int seats_ = 0;                      // workers that may still join the open loop
  int seated_ = 0;                     // workers inside the current loop
  std::exception_ptr error_;
};

ThreadPool* g_pool = nullptr;
std::once_flag g_pool_once;

// A forked child has none of its parent's threads: it drops the parent's pool (never touched
// again, so never freed) and starts its own on its first parallel loop.
void forget_pool_after_fork() { g_pool = new ThreadPool(); }

// Created once and never destroyed: its workers sleep until the process exits, and joining
// them from a static destructor would race with the interpreter's shutdown.
ThreadPool& pool() {
  std::call_once(g_pool_once, [] {
    g_pool = new ThreadPool();
#if defined(__unix__) || defined(__APPLE__)
    pthread_atfork(nullptr, nullptr, forget_pool_after_fork);
#endif
  });
  return *g_pool;
}

}  // namespace

int default_num_threads() { return available_cpus(); }

int num_threads() { return thread_setting().load(std::memory_order_relaxed); }

void set_num_threads(int n) { thread_setting().store(std::max(1, n), std::memory_order_relaxed); }

index_t parallel_grain() { return g_grain.load(std::memory_order_relaxed); }

void set_parallel_grain(index_t grain) { g_grain.store(std::max<index_t>(0, grain), std::memory_order_relaxed); }

int loop_threads(index_t n, index_t work) {
  if (work < parallel_grain() || n < 2) return 1;
  return static_cast<int>(std::min<index_t>(num_threads(), n));
}

void parallel_for_ranges(index_t n, index_t work, const RangeFn& fn) {
  if (n <= 0) return;
  const int threads = loop_threads(n, work);
  if (threads <= 1) {
    fn(0, n);
    return;
  }
  const index_t chunk = std::max<index_t>(1, n / (threads * kChunksPerThread));
  pool().run(n, chunk, threads - 1, fn);
}

}  // namespace hiper::cpu
