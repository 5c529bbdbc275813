// CPU launcher of the span masker (see hiper/span_masker.h): one row per iteration, each
// thread with its own text buffer. Rows are independent, so they are split over threads.
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

// Writes one output row once: row[j] = (t0 <= j < t1) && resp[j] (memset outside the span,
// a vectorised byte loop inside it).
inline void write_span(flag_t* row, const flag_t* resp, index_t L, index_t t0, index_t t1) {
  if (row == nullptr) return;
  t0 = std::min(std::max<index_t>(t0, 0), L);
  t1 = std::min(std::max(t1, t0), L);
  std::memset(row, 0, static_cast<size_t>(t0));
  for (index_t j = t0; j < t1; ++j) row[j] = static_cast<flag_t>(bit(resp[j]));
  std::memset(row + t1, 0, static_cast<size_t>(L - t1));
}

// row[j] = (j == pos), for value read positions (pos < 0: an empty row).
inline void write_point(flag_t* row, index_t L, index_t pos) {
  if (row == nullptr) return;
  std::memset(row, 0, static_cast<size_t>(L));
  if (pos >= 0 && pos < L) row[pos] = 1;
}

template <typename token_t>
void mask_row(const SpanMaskParams<token_t>& p, index_t i, RowScratch& s) {
  const index_t L = p.length;
  const index_t base = i * L;
  const flag_t* resp = p.response_mask + base;
  auto row = [&](flag_t* out) { return out == nullptr ? nullptr : out + base; };

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
  p.invalid_at[i] = -1;
  for (index_t t = 0; t < count; ++t) {
    const index_t id = static_cast<index_t>(ids[t]);
    if (id < 0 || id >= vocab_size) {  // reported by the caller; the row is left empty
      p.invalid_at[i] = t;
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
  for (int k = 0; k < 3; ++k) m[k] = find_tag(text, n, s.lt.data(), static_cast<index_t>(s.lt.size()), kTags[k]);

  // Token span of a block as the reference maps it, or false when it finds none.
  auto token_span = [&](const TagMatch& tm, index_t* t0, index_t* t1) {
    if (!tm.found) return false;
    const index_t b = p.include_tags ? tm.open : tm.content;
    const index_t e = p.include_tags ? tm.close_end : tm.close;
    if (b >= e) return false;
    *t0 = token_ending_after(s.ends.data(), count, b);
    if (*t0 >= count) return false;
    *t1 = token_starting_at_or_after(s.starts.data(), count, e);
    return *t0 < *t1;
  };

  index_t t0 = 0, t1 = 0;
  if (!token_span(m[static_cast<int>(Block::kAction)], &t0, &t1)) {
    t0 = 0;  // no action block: the whole response is trained as the action
    t1 = count;
  }
  write_span(row(p.action_mask), resp, L, t0, t1);
  if (!token_span(m[static_cast<int>(Block::kSubgoal)], &t0, &t1)) t0 = t1 = 0;
  write_span(row(p.subgoal_mask), resp, L, t0, t1);
  if (!token_span(m[static_cast<int>(Block::kSwitch)], &t0, &t1)) t0 = t1 = 0;
  write_span(row(p.switch_mask), resp, L, t0, t1);
  if (p.is_new_subgoal != nullptr) {  // a missing switch block keeps the subgoal
    const TagMatch& w = m[static_cast<int>(Block::kSwitch)];
    p.is_new_subgoal[i] = count > 0 && w.found && switch_starts_segment(text, w.content, w.close);
  }

  // Value read positions.
  if (p.value_mask_low != nullptr) {
    index_t pos = 0;  // position 0 even when it is not a valid token, as the reference does
    for (int k : {static_cast<int>(Block::kSubgoal), static_cast<int>(Block::kSwitch)}) {
      if (!m[k].found) continue;
      const index_t after = token_starting_at_or_after(s.starts.data(), count, m[k].close_end);
      if (after < L && resp[after] != 0) {
        pos = after;
        break;
      }
    }
    write_point(row(p.value_mask_low), L, pos);
  }
  if (p.value_mask_high != nullptr)
    write_point(row(p.value_mask_high), L, (p.is_boundary[i] != 0 && L > 0 && resp[0] != 0) ? 0 : -1);
  if (p.value_mask_term != nullptr) {
    index_t first = -1;
    for (index_t j = 0; j < L && first < 0; ++j)
      if (resp[j] != 0) first = j;
    write_point(row(p.value_mask_term), L, first);
  }
}

}  // namespace

template <typename token_t>
void span_masks(const SpanMaskParams<token_t>& p) {
  const index_t grain_work = p.num_rows * p.length;
#if defined(HIPER_WITH_OPENMP)
  if (grain_work >= kParallelGrain) {
#pragma omp parallel
    {
      RowScratch scratch;
#pragma omp for schedule(dynamic, 64)
      for (index_t i = 0; i < p.num_rows; ++i) mask_row(p, i, scratch);
    }
    return;
  }
#endif
  RowScratch scratch;
  for (index_t i = 0; i < p.num_rows; ++i) mask_row(p, i, scratch);
}

template void span_masks<int64_t>(const SpanMaskParams<int64_t>&);
template void span_masks<int32_t>(const SpanMaskParams<int32_t>&);

}  // namespace hiper::cpu
