// CUDA binding of the device trajectory buffer's pack (see hiper/pack_rows.h).
#include "bindings/ops.h"

#if defined(HIPER_WITH_CUDA)
#include "bindings/cuda_args.h"

namespace hiper::bindings {
namespace {

void pack_rows_py(index_t n, index_t prompt_width, index_t response_width, int64_t pad_id, ptr_t sources,
                  ptr_t prompts, ptr_t prompt_mask, ptr_t responses, ptr_t response_mask, ptr_t input_ids,
                  ptr_t attention_mask, int device, ptr_t stream) {
  if (n < 0 || prompt_width < 0 || response_width < 0) throw py::value_error("n, widths: expected sizes >= 0");
  PackRowsParams p;
  p.rows = n;
  p.prompt_width = prompt_width;
  p.response_width = response_width;
  p.pad_id = pad_id;
  p.sources = in<int64_t>(sources);
  p.prompts = out<int64_t>(prompts);
  p.prompt_mask = out<flag_t>(prompt_mask);
  p.responses = out<int64_t>(responses);
  p.response_mask = out<flag_t>(response_mask);
  p.input_ids = out<int64_t>(input_ids);
  p.attention_mask = out<flag_t>(attention_mask);
  on_device(device, [&] { cuda::pack_rows(p, stream); });
}

}  // namespace

void register_cuda_buffer(py::module_& m) {
  using namespace pybind11::literals;
  m.def("cuda_pack_rows", &pack_rows_py, py::kw_only(), "n"_a, "prompt_width"_a, "response_width"_a, "pad_id"_a,
        "sources"_a, "prompts"_a, "prompt_mask"_a, "responses"_a, "response_mask"_a, "input_ids"_a,
        "attention_mask"_a, "device"_a, "stream"_a,
        "Enqueue the device buffer's pack on `stream`: output row i from the source rows sources[i] (device "
        "addresses, see hiper/pack_rows.h).");
}

}  // namespace hiper::bindings

#else

namespace hiper::bindings {
void register_cuda_buffer(pybind11::module_&) {}
}  // namespace hiper::bindings

#endif
