// CPU launcher of the span masker (see hiper/span_masker.h): one row per iteration, each
// chunk of rows with its own text buffer; the per-row code after the tag search is the
// header's, shared with the CUDA kernel. Rows are independent, so they are split over threads.
#include <algorithm>
#include <cstring>
#include <vector>

#include "cpu/launchers.h"
#include "cpu/parallel.h"
#include "hiper/span_masker.h"

namespace hiper::cpu {
namespace {

constexpr index_t kCopyBlock = kVocabSlack;

struct RowScratch {
  std::vector<uint8_t> text;
  std::vector<index_t> starts, ends;
  std::vector<index_t> lt;  // positions of '<' in the text
};

template <typename token_t>
void mask_row(const SpanMaskParams<token_t>& p, index_t i, RowScratch& s) {
  const index_t L = p.length;
  const index_t base = i * L;
  const flag_t* resp = p.response_mask + base;

  index_t count = 0;
  for (index_t j = 0; j < L; ++j) count += bit(resp[j]);

  // The text of the first `count` tokens (the reference decodes that prefix).
  // Scratch only grows: resizing down and up again would zero-fill it on every row.
  const size_t need = static_cast<size_t>(count * p.vocab.max_token_bytes + kCopyBlock);
  if (s.text.size() < need) s.text.resize(need);
  if (s.starts.size() < static_cast<size_t>(count)) {
    s.starts.resize(static_cast<size_t>(count));
    s.ends.resize(static_cast<size_t>(count));
  }
  // Locals, not members: stores into the scratch could otherwise alias them and force reloads.
  const token_t* ids = p.tokens + base;
  const index_t* vocab_offsets = p.vocab.offsets;
  const uint8_t* vocab_bytes = p.vocab.bytes;
  const index_t vocab_size = p.vocab.size;
  uint8_t* out = s.text.data();
  index_t* starts = s.starts.data();
  index_t* ends = s.ends.data();
  index_t n = 0;
  if (p.invalid_at != nullptr) p.invalid_at[i] = -1;
  for (index_t t = 0; t < count; ++t) {
    const index_t id = static_cast<index_t>(ids[t]);
    if (id < 0 || id >= vocab_size) {  // reported by the caller; the row is left empty
      if (p.invalid_at != nullptr) p.invalid_at[i] = t;
      count = n = 0;
      break;
    }
    const index_t b = vocab_offsets[id], len = vocab_offsets[id + 1] - b;
    starts[t] = n;
    // Most tokens are a few bytes: copy a fixed block (one load and store; the vocabulary
    // and the scratch both have kCopyBlock bytes of slack) and advance by the real length.
    if (len <= kCopyBlock)
      std::memcpy(out + n, vocab_bytes + b, kCopyBlock);
    else
      std::memcpy(out + n, vocab_bytes + b, static_cast<size_t>(len));
    n += len;
    ends[t] = n;
  }
  const uint8_t* text = s.text.data();
  s.lt.clear();
  for (const uint8_t* q = text; (q = static_cast<const uint8_t*>(std::memchr(q, '<', text + n - q))) != nullptr; ++q)
    s.lt.push_back(q - text);

  TagMatch m[3];
  for (int k = 0; k < 3; ++k)
    m[k] = find_tag(text, n, s.lt.data(), static_cast<index_t>(s.lt.size()), tag_set(k));
  index_t first = -1;
  if (p.value_mask_term != nullptr)
    for (index_t j = 0; j < L && first < 0; ++j)
      if (resp[j] != 0) first = j;
  const RowSpans spans = row_spans(p, i, text, m, s.starts.data(), s.ends.data(), count, first);
  if (p.is_new_subgoal != nullptr) p.is_new_subgoal[i] = spans.is_new_subgoal;
  write_row_masks(p, i, spans, 0, L);
}

}  // namespace

template <typename token_t>
void span_masks(const SpanMaskParams<token_t>& p) {
  // A scratch per chunk of rows: its buffers grow to the chunk's longest row and are reused.
  parallel_for_ranges(p.num_rows, p.num_rows * p.length, [&p](index_t begin, index_t end) {
    RowScratch scratch;
    for (index_t i = begin; i < end; ++i) mask_row(p, i, scratch);
  });
}

// The CUDA kernel's row algorithm (mask_row_by_tokens) on the host, for tests: the same
// outputs as span_masks, through the token-walking search.
template <typename token_t>
void span_masks_by_tokens(const SpanMaskParams<token_t>& p) {
  std::vector<index_t> starts(static_cast<size_t>(p.length) + 1);
  for (index_t i = 0; i < p.num_rows; ++i) mask_row_by_tokens(p, i, starts.data());
}

template void span_masks<int64_t>(const SpanMaskParams<int64_t>&);
template void span_masks<int32_t>(const SpanMaskParams<int32_t>&);
template void span_masks_by_tokens<int64_t>(const SpanMaskParams<int64_t>&);
template void span_masks_by_tokens<int32_t>(const SpanMaskParams<int32_t>&);

}  // namespace hiper::cpu
