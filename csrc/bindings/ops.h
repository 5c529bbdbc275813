#pragma once

#include <pybind11/pybind11.h>

namespace hiper::bindings {
void register_layout(pybind11::module_& m);      // layout_bindings.cpp
void register_hae_ops(pybind11::module_& m);     // hae_bindings.cpp
void register_flat_ops(pybind11::module_& m);    // flat_bindings.cpp
void register_token_ops(pybind11::module_& m);   // token_bindings.cpp
void register_factorize(pybind11::module_& m);   // factorize.cpp
void register_masker(pybind11::module_& m);      // masker_bindings.cpp
void register_buffer(pybind11::module_& m);      // buffer_bindings.cpp
void register_threads(pybind11::module_& m);     // threads.cpp
// The CUDA ops (cuda_*_bindings.cpp); each registers nothing in a build without CUDA.
void register_cuda_layout(pybind11::module_& m);
void register_cuda_hae_ops(pybind11::module_& m);
void register_cuda_token_ops(pybind11::module_& m);
void register_cuda_masker(pybind11::module_& m);
void register_cuda_buffer(pybind11::module_& m);
}  // namespace hiper::bindings
