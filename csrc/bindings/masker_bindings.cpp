// Binding of the span masker: a vocabulary table built once from the tokenizer's
// standalone token decodings, then applied to (N, L) batches of token ids.
#include <Python.h>

#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "bindings/arrays.h"
#include "bindings/ops.h"
#include "bindings/threads.h"
#include "cpu/launchers.h"

namespace hiper::bindings {
namespace {

class SpanMasker {
 public:
  // pieces[id]: the standalone decoding of token id (str).
  explicit SpanMasker(const py::sequence& pieces) {
    const auto n = static_cast<index_t>(py::len(pieces));
    offsets_.reserve(static_cast<size_t>(n) + 1);
    offsets_.push_back(0);
    for (index_t id = 0; id < n; ++id) {
      py::handle item = pieces[static_cast<size_t>(id)];
      if (!PyUnicode_Check(item.ptr()))
        throw py::type_error("pieces: entry " + std::to_string(id) + " is not a str");
      Py_ssize_t size = 0;
      const char* utf8 = PyUnicode_AsUTF8AndSize(item.ptr(), &size);
      if (utf8 == nullptr) throw py::error_already_set();
      bytes_.insert(bytes_.end(), utf8, utf8 + size);
      offsets_.push_back(static_cast<index_t>(bytes_.size()));
      max_token_bytes_ = std::max<index_t>(max_token_bytes_, size);
      has_lt_.push_back(std::memchr(utf8, '<', static_cast<size_t>(size)) != nullptr);
    }
    bytes_.resize(bytes_.size() + kVocabSlack, 0);  // see kVocabSlack
  }

  index_t vocab_size() const { return static_cast<index_t>(offsets_.size()) - 1; }

  py::bytes token_bytes(index_t id) const {
    if (id < 0 || id >= vocab_size()) throw py::value_error("id: outside the vocabulary");
    return py::bytes(reinterpret_cast<const char*>(bytes_.data() + offsets_[id]),
                     static_cast<size_t>(offsets_[id + 1] - offsets_[id]));
  }

  // The table as the CUDA path copies it to a device: (bytes, offsets, has_lt), read-only
  // numpy views kept alive by this object (see VocabView).
  py::tuple table(const py::object& self) const {
    auto view = [&self](const auto& v, const char* dtype) {
      py::array a(py::dtype(dtype), {static_cast<py::ssize_t>(v.size())}, {}, v.data(), self);
      a.attr("setflags")(py::arg("write") = false);
      return a;
    };
    return py::make_tuple(view(bytes_, "uint8"), view(offsets_, "int64"), view(has_lt_, "uint8"));
  }

  void apply(const py::object& responses, const py::object& response_mask, bool include_tags,
             const py::object& is_boundary, const py::object& action_mask, const py::object& subgoal_mask,
             const py::object& switch_mask, const py::object& value_mask_high, const py::object& value_mask_low,
             const py::object& value_mask_term, const py::object& is_new_subgoal, bool by_tokens) const {
    py::array tok = checked_array(responses, "responses", Kind::kToken, {-1, -1});
    const auto n = tok.shape(0), L = tok.shape(1);
    py::array resp = checked_array(response_mask, "response_mask", Kind::kFlag, {n, L});
    py::array bnd = checked_array(is_boundary, "is_boundary", Kind::kFlag, {n}, true);
    auto mask_out = [&](const py::object& o, const char* name) {
      return checked_array(o, name, Kind::kFlag, {n, L}, true, true);
    };
    py::array outs[6] = {mask_out(action_mask, "action_mask"),         mask_out(subgoal_mask, "subgoal_mask"),
                         mask_out(switch_mask, "switch_mask"),         mask_out(value_mask_high, "value_mask_high"),
                         mask_out(value_mask_low, "value_mask_low"),   mask_out(value_mask_term, "value_mask_term")};
    py::array is_new = checked_array(is_new_subgoal, "is_new_subgoal", Kind::kFlag, {n}, true, true);
    if (outs[3].ptr() != nullptr && bnd.ptr() == nullptr)
      throw py::value_error("is_boundary: required to write value_mask_high");
    std::vector<index_t> invalid_at(static_cast<size_t>(n), -1);
    if (tok.dtype().itemsize() == 8)
      run<int64_t>(tok, resp, include_tags, bnd, outs, is_new, invalid_at.data(), by_tokens);
    else
      run<int32_t>(tok, resp, include_tags, bnd, outs, is_new, invalid_at.data(), by_tokens);
    for (py::ssize_t i = 0; i < n; ++i) {
      const index_t j = invalid_at[static_cast<size_t>(i)];
      if (j < 0) continue;
      const int64_t id = tok.dtype().itemsize() == 8 ? static_cast<const int64_t*>(tok.data())[i * L + j]
                                                     : static_cast<const int32_t*>(tok.data())[i * L + j];
      throw py::value_error("responses: token id " + std::to_string(id) + " at row " + std::to_string(i) +
                            ", position " + std::to_string(j) + " is outside the vocabulary (size " +
                            std::to_string(vocab_size()) + ")");
    }
  }

 private:
  template <typename token_t>
  void run(const py::array& tok, const py::array& resp, bool include_tags, const py::array& bnd, py::array* outs,
           py::array& is_new, index_t* invalid_at, bool by_tokens) const {
    SpanMaskParams<token_t> p;
    p.num_rows = tok.shape(0);
    p.length = tok.shape(1);
    p.tokens = in_ptr<token_t>(tok);
    p.response_mask = in_ptr<flag_t>(resp);
    p.vocab.size = vocab_size();
    p.vocab.bytes = bytes_.data();
    p.vocab.offsets = offsets_.data();
    p.vocab.max_token_bytes = max_token_bytes_;
    p.vocab.has_lt = has_lt_.data();
    p.include_tags = include_tags;
    p.is_boundary = in_ptr<flag_t>(bnd);
    p.action_mask = out_ptr<flag_t>(outs[0]);
    p.subgoal_mask = out_ptr<flag_t>(outs[1]);
    p.switch_mask = out_ptr<flag_t>(outs[2]);
    p.value_mask_high = out_ptr<flag_t>(outs[3]);
    p.value_mask_low = out_ptr<flag_t>(outs[4]);
    p.value_mask_term = out_ptr<flag_t>(outs[5]);
    p.is_new_subgoal = out_ptr<flag_t>(is_new);
    p.invalid_at = invalid_at;
    ReleaseGil release;
    if (by_tokens)
      cpu::span_masks_by_tokens<token_t>(p);
    else
      cpu::span_masks<token_t>(p);
  }

  std::vector<uint8_t> bytes_;
  std::vector<index_t> offsets_;
  std::vector<flag_t> has_lt_;  // see VocabView::has_lt
  index_t max_token_bytes_ = 0;
};

}  // namespace

void register_masker(py::module_& m) {
  using namespace pybind11::literals;
  py::class_<SpanMasker, std::shared_ptr<SpanMasker>>(m, "SpanMasker",
                                                      "Plan-Execute span masks from token ids (see hiper.SpanMasker).")
      .def(py::init<const py::sequence&>(), "pieces"_a)
      .def_property_readonly("vocab_size", &SpanMasker::vocab_size)
      .def("token_bytes", &SpanMasker::token_bytes, "id"_a)
      .def(
          "table", [](const py::object& self) { return self.cast<const SpanMasker&>().table(self); },
          "(bytes, offsets, has_lt): the vocabulary table as read-only numpy views, for copying it to a device.")
      .def("apply", &SpanMasker::apply, "responses"_a, "response_mask"_a, "include_tags"_a,
           "is_boundary"_a = py::none(), "action_mask"_a = py::none(), "subgoal_mask"_a = py::none(),
           "switch_mask"_a = py::none(), "value_mask_high"_a = py::none(), "value_mask_low"_a = py::none(),
           "value_mask_term"_a = py::none(), "is_new_subgoal"_a = py::none(), "by_tokens"_a = false,
           "Write the requested span masks, value masks and switch decisions for a batch. by_tokens: run the CUDA "
           "kernel's row algorithm (the token-walking search) on the host instead, one thread (for tests).");
}

}  // namespace hiper::bindings
