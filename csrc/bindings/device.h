// Whether the build has CUDA and whether a device is usable. Implemented in
// bindings/device.cpp, which asks csrc/cuda when the build has it.
#pragma once

namespace hiper::bindings {
bool cuda_compiled();
int cuda_device_count();
}  // namespace hiper::bindings
