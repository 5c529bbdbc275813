// Shared plumbing of the CUDA launchers: error checks, grid sizing and workspace carving.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "cuda/launchers.h"

namespace hiper::cuda {

// Throws std::runtime_error (RuntimeError in Python) naming the op and the CUDA error.
inline void check(cudaError_t status, const char* op, const char* what) {
  if (status == cudaSuccess) return;
  throw std::runtime_error(std::string("hiper.") + op + ": " + what + " failed: " + cudaGetErrorName(status) + " (" +
                           cudaGetErrorString(status) + ")");
}

// After a kernel launch: reports a bad launch configuration or an earlier asynchronous error.
// (Errors inside a running kernel surface at a later synchronising call, as in any CUDA code.)
inline void check_launch(const char* op, const char* kernel) { check(cudaGetLastError(), op, kernel); }

inline cudaStream_t as_stream(stream_t s) { return reinterpret_cast<cudaStream_t>(s); }

// Blocks of `threads` covering n items; n > 0. Indices are 64-bit throughout, and 2^31 - 1
// blocks of 128+ threads cover any array that fits in device memory.
inline unsigned blocks_for(index_t n, int threads) {
  return static_cast<unsigned>((n + threads - 1) / threads);
}

// 64-bit global index of the calling thread in a 1D grid.
__device__ __forceinline__ index_t global_index() {
  return static_cast<index_t>(blockIdx.x) * blockDim.x + threadIdx.x;
}

// Warp-level helpers of the warp-per-row kernels. They need all 32 lanes: those kernels
// size blocks in whole warps and let a warp leave only as a whole.
constexpr int kWarp = 32;
constexpr unsigned kFullWarp = 0xffffffffu;

__device__ __forceinline__ index_t warp_sum(index_t v) {
  for (int offset = kWarp / 2; offset > 0; offset /= 2) v += __shfl_xor_sync(kFullWarp, v, offset);
  return v;
}

__device__ __forceinline__ index_t warp_min(index_t v) {
  for (int offset = kWarp / 2; offset > 0; offset /= 2) {
    const index_t other = __shfl_xor_sync(kFullWarp, v, offset);
    v = other < v ? other : v;
  }
  return v;
}

// Carves aligned pieces out of one caller-provided device allocation. Built with a null base
// it only measures, so a launcher's *_workspace_bytes() and the launcher itself take the same
// pieces in the same order and cannot disagree.
class Workspace {
 public:
  Workspace(void* base, size_t bytes, const char* op) : base_(static_cast<char*>(base)), bytes_(bytes), op_(op) {
    if (reinterpret_cast<std::uintptr_t>(base) % kAlign != 0)
      throw std::runtime_error(std::string("hiper.") + op + ": workspace must be " + std::to_string(kAlign) +
                               "-byte aligned");
  }
  static Workspace measure() { return Workspace(nullptr, 0, ""); }

  template <typename T>
  T* take(size_t count) {
    offset_ = (offset_ + kAlign - 1) / kAlign * kAlign;
    T* at = base_ == nullptr ? nullptr : reinterpret_cast<T*>(base_ + offset_);
    offset_ += count * sizeof(T);
    if (base_ != nullptr && offset_ > bytes_)
      throw std::runtime_error(std::string("hiper.") + op_ + ": workspace of " + std::to_string(bytes_) +
                               " bytes is too small (needs " + std::to_string(offset_) + ")");
    return at;
  }
  size_t used() const { return offset_; }

 private:
  static constexpr size_t kAlign = 256;  // what cudaMalloc guarantees; enough for any access
  char* base_;
  size_t bytes_;
  const char* op_;
  size_t offset_ = 0;
};

}  // namespace hiper::cuda
