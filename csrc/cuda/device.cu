// CUDA device discovery and selection. The runtime is linked statically, so device_count()
// returns 0 (rather than failing to load) on machines with the CUDA build but no driver or
// no GPU; nothing here runs at import time.
#include <cuda_runtime.h>

#include "cuda/runtime.cuh"

namespace hiper::cuda {

int device_count() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky error so later runtime calls are not poisoned
    return 0;
  }
  return count;
}

DeviceScope::DeviceScope(int device) : device_(device) {
  check(cudaGetDevice(&previous_), "device", "cudaGetDevice");
  if (previous_ != device_) check(cudaSetDevice(device_), "device", "cudaSetDevice");
}

DeviceScope::~DeviceScope() {
  if (previous_ != device_) cudaSetDevice(previous_);  // best effort: destructors must not throw
}

}  // namespace hiper::cuda
