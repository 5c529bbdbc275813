// Shared definitions for the framework-free hiper core.
//
// Everything under csrc/include/hiper is plain C++17 over raw pointers and sizes, so the
// same row / trajectory functions compile for the CPU launchers and (through
// HIPER_HOST_DEVICE) for the CUDA kernels. No Python, no torch.
#pragma once

#include <cstddef>
#include <cstdint>

#if defined(__CUDACC__)
#define HIPER_HOST_DEVICE __host__ __device__ inline
#else
#define HIPER_HOST_DEVICE inline
#endif

// Promise that pointer parameters do not alias; lets compilers vectorise multi-stream loops.
#define HIPER_RESTRICT __restrict__

namespace hiper {

// Every index and size in the core is 64-bit: N * L for a large batch overflows int32.
using index_t = int64_t;

// Boolean inputs arrive as one byte per element (numpy/torch bool or uint8); any
// non-zero byte means true.
using flag_t = uint8_t;

// A flag byte as 0/1 (any non-zero byte is set). Written as min(byte, 1), not `byte != 0`:
// gcc turns the comparison into a branch in many loops, which both stops vectorisation and
// mispredicts on irregular masks.
HIPER_HOST_DEVICE int bit(flag_t x) { return x < 1 ? x : 1; }

// base^exponent for a non-negative integer exponent by repeated squaring: exact for base 1
// (the usual gamma), within a few ulps otherwise, and much cheaper than std::pow. Used for
// gamma^d instead of a running product along the trajectory.
template <typename T>
HIPER_HOST_DEVICE T ipow(T base, index_t exponent) {
  T result = 1;
  while (exponent > 0) {
    if (exponent & 1) result *= base;
    base *= base;
    exponent >>= 1;
  }
  return result;
}

}  // namespace hiper
