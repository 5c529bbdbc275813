// CUDA binding of the span masker. The vocabulary table is the device copy hiper/masks.py
// makes once per device (bytes, offsets, has_lt, as _C.SpanMasker.table() gives them).
#include "bindings/ops.h"

#if defined(HIPER_WITH_CUDA)
#include "bindings/cuda_args.h"

namespace hiper::bindings {
namespace {

void span_masks_py(index_t n, index_t length, ptr_t responses, int token_bytes, ptr_t response_mask,
                   index_t vocab_size, ptr_t vocab_bytes, ptr_t vocab_offsets, ptr_t vocab_has_lt, bool include_tags,
                   ptr_t is_boundary, ptr_t action_mask, ptr_t subgoal_mask, ptr_t switch_mask, ptr_t value_mask_high,
                   ptr_t value_mask_low, ptr_t value_mask_term, ptr_t is_new_subgoal, ptr_t first_invalid,
                   ptr_t workspace, size_t workspace_bytes, int device, ptr_t stream) {
  if (token_bytes != 4 && token_bytes != 8) throw py::value_error("token_bytes: expected 4 or 8");
  if (n < 0 || length < 0 || vocab_size < 0) throw py::value_error("n, length, vocab_size: expected sizes >= 0");
  auto run = [&](auto token) {
    using token_t = decltype(token);
    SpanMaskParams<token_t> p;
    p.num_rows = n;
    p.length = length;
    p.tokens = in<token_t>(responses);
    p.response_mask = in<flag_t>(response_mask);
    p.vocab.size = vocab_size;
    p.vocab.bytes = in<uint8_t>(vocab_bytes);
    p.vocab.offsets = in<index_t>(vocab_offsets);
    p.vocab.has_lt = in<flag_t>(vocab_has_lt);
    p.include_tags = include_tags;
    p.is_boundary = in<flag_t>(is_boundary);
    p.action_mask = out<flag_t>(action_mask);
    p.subgoal_mask = out<flag_t>(subgoal_mask);
    p.switch_mask = out<flag_t>(switch_mask);
    p.value_mask_high = out<flag_t>(value_mask_high);
    p.value_mask_low = out<flag_t>(value_mask_low);
    p.value_mask_term = out<flag_t>(value_mask_term);
    p.is_new_subgoal = out<flag_t>(is_new_subgoal);
    p.invalid_at = nullptr;  // the batch's first bad id goes to first_invalid
    on_device(device, [&] {
      cuda::span_masks<token_t>(p, out<int64_t>(first_invalid), reinterpret_cast<void*>(workspace), workspace_bytes,
                                stream);
    });
  };
  if (token_bytes == 8)
    run(int64_t{});
  else
    run(int32_t{});
}

}  // namespace

void register_cuda_masker(py::module_& m) {
  using namespace pybind11::literals;
  m.def(
      "cuda_span_masks_workspace_bytes",
      [](index_t n, index_t length, int device) {
        return on_device(device, [&] { return cuda::span_masks_workspace_bytes(n, length); });
      },
      py::kw_only(), "n"_a, "length"_a, "device"_a, "Device workspace (bytes) cuda_span_masks needs for (n, length).");
  m.def("cuda_span_masks", &span_masks_py, py::kw_only(), "n"_a, "length"_a, "responses"_a, "token_bytes"_a,
        "response_mask"_a, "vocab_size"_a, "vocab_bytes"_a, "vocab_offsets"_a, "vocab_has_lt"_a, "include_tags"_a,
        "is_boundary"_a, "action_mask"_a, "subgoal_mask"_a, "switch_mask"_a, "value_mask_high"_a, "value_mask_low"_a,
        "value_mask_term"_a, "is_new_subgoal"_a, "first_invalid"_a, "workspace"_a, "workspace_bytes"_a, "device"_a,
        "stream"_a,
        "Enqueue the span masks, value masks and switch decisions of a batch on `stream`; writes the outputs whose "
        "pointer is non-zero, and into first_invalid (one int64) the first row * length + position holding an id "
        "outside the vocabulary, or -1.");
}

}  // namespace hiper::bindings

#else

namespace hiper::bindings {
void register_cuda_masker(pybind11::module_&) {}
}  // namespace hiper::bindings

#endif
