// Shared definitions for the framework-free hiper core.
//
// Everything under csrc/include/hiper is plain C++17 over raw pointers and sizes, so the
// same row / trajectory functions compile for the CPU launchers and (through
// HIPER_HOST_DEVICE) for the CUDA kernels. No Python, no torch.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define HIPER_HOST_DEVICE __host__ __device__ inline
#else
#define HIPER_HOST_DEVICE inline
#endif

namespace hiper {

// Every index and size in the core is 64-bit: N * L for a large batch overflows int32.
using index_t = int64_t;

// Boolean inputs arrive as one byte per element (numpy/torch bool or uint8); any
// non-zero byte means true.
using flag_t = uint8_t;

}  // namespace hiper
