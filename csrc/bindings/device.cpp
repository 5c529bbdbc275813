#include "bindings/device.h"

#if defined(HIPER_WITH_CUDA)
namespace hiper::cuda {
int device_count();  // csrc/cuda/device.cu
}
#endif

namespace hiper::bindings {

bool cuda_compiled() {
#if defined(HIPER_WITH_CUDA)
  return true;
#else
  return false;
#endif
}

int cuda_device_count() {
#if defined(HIPER_WITH_CUDA)
  return hiper::cuda::device_count();
#else
  return 0;
#endif
}

}  // namespace hiper::bindings
