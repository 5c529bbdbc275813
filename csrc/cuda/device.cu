// CUDA device discovery. The runtime is linked statically, so this returns 0 (rather than
// failing to load) on machines with the CUDA build but no driver or no GPU.
#include <cuda_runtime.h>

namespace hiper::cuda {

int device_count() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky error so later runtime calls are not poisoned
    return 0;
  }
  return count;
}

}  // namespace hiper::cuda
