// CPU launcher of the span masker (see hiper/span_masker.h): one row per iteration, each
// thread with its own text buffer. Rows are independent, so they are split over threads.
#include <algorithm>
#include <vector>

#include "cpu/launchers.h"
#include "cpu/parallel.h"
#include "hiper/span_masker.h"

namespace hiper::cpu {
namespace {

struct RowScratch {
  std::vector<uint8_t> text;
  std::vector<index_t> starts, ends;
};

// Marks tokens [t0, t1) of a row.
inline void fill(flag_t* row, index_t t0, index_t t1) {
  if (row != nullptr && t0 < t1) std::fill(row + t0, row + t1, flag_t{1});
}

template <typename token_t>
void mask_row(const SpanMaskParams<token_t>& p, index_t i, RowScratch& s) {
  const index_t L = p.length;
  const index_t base = i * L;
  const flag_t* resp = p.response_mask + base;
  flag_t* rows[6] = {p.action_mask, p.subgoal_mask, p.switch_mask, p.value_mask_high, p.value_mask_low,
                     p.value_mask_term};
  for (flag_t*& r : rows) {
    if (r == nullptr) continue;
    r += base;
    std::fill(r, r + L, flag_t{0});
  }
  flag_t *action = rows[0], *subgoal = rows[1], *sw = rows[2], *v_high = rows[3], *v_low = rows[4],
         *v_term = rows[5];

  index_t count = 0;
  for (index_t j = 0; j < L; ++j) count += bit(resp[j]);

  // The text of the first `count` tokens (the reference decodes that prefix).
  s.text.clear();
  s.starts.resize(static_cast<size_t>(count));
  s.ends.resize(static_cast<size_t>(count));
  const token_t* ids = p.tokens + base;
  p.invalid_at[i] = -1;
  for (index_t t = 0; t < count; ++t) {
    const index_t id = static_cast<index_t>(ids[t]);
    if (id < 0 || id >= p.vocab.size) {  // reported by the caller; the row stays empty
      p.invalid_at[i] = t;
      count = 0;
      s.text.clear();
      break;
    }
    const uint8_t* b = p.vocab.bytes + p.vocab.offsets[id];
    const uint8_t* e = p.vocab.bytes + p.vocab.offsets[id + 1];
    s.starts[t] = static_cast<index_t>(s.text.size());
    s.text.insert(s.text.end(), b, e);
    s.ends[t] = static_cast<index_t>(s.text.size());
  }
  const uint8_t* text = s.text.data();
  const index_t n = static_cast<index_t>(s.text.size());

  TagMatch m[3];
  for (int k = 0; k < 3; ++k) m[k] = find_tag(text, n, kTags[k]);

  // Token span of a block, or [0, 0) when the reference finds none.
  auto token_span = [&](const TagMatch& tm, index_t* t0, index_t* t1) {
    *t0 = *t1 = 0;
    if (!tm.found) return false;
    const index_t b = p.include_tags ? tm.open : tm.content;
    const index_t e = p.include_tags ? tm.close_end : tm.close;
    if (b >= e) return false;
    const index_t first = token_ending_after(s.ends.data(), count, b);
    if (first >= count) return false;
    const index_t last = token_starting_at_or_after(s.starts.data(), count, e);
    if (first >= last) return false;
    *t0 = first;
    *t1 = last;
    return true;
  };

  if (count > 0) {
    index_t t0, t1;
    if (token_span(m[static_cast<int>(Block::kAction)], &t0, &t1)) fill(action, t0, t1);
    else fill(action, 0, count);  // no action block: train the whole response as the action
    if (token_span(m[static_cast<int>(Block::kSubgoal)], &t0, &t1)) fill(subgoal, t0, t1);
    if (token_span(m[static_cast<int>(Block::kSwitch)], &t0, &t1)) fill(sw, t0, t1);
    if (p.is_new_subgoal != nullptr) {  // a missing switch block keeps the subgoal
      const TagMatch& w = m[static_cast<int>(Block::kSwitch)];
      p.is_new_subgoal[i] = w.found && switch_starts_segment(text, w.content, w.close);
    }
  } else if (p.is_new_subgoal != nullptr) {
    p.is_new_subgoal[i] = 0;
  }

  // Value read positions. Every mask is finally restricted to the response mask.
  if (v_low != nullptr) {
    index_t pos = -1;
    for (int k : {static_cast<int>(Block::kSubgoal), static_cast<int>(Block::kSwitch)}) {
      if (!m[k].found) continue;
      const index_t after = token_starting_at_or_after(s.starts.data(), count, m[k].close_end);
      if (after < L && resp[after] != 0) {
        pos = after;
        break;
      }
    }
    v_low[pos >= 0 ? pos : 0] = 1;  // position 0 even when it is not a valid token, as the reference does
  }
  if (v_high != nullptr && p.is_boundary[i] != 0 && L > 0 && resp[0] != 0) v_high[0] = 1;
  if (v_term != nullptr) {
    for (index_t j = 0; j < L; ++j)
      if (resp[j] != 0) {
        v_term[j] = 1;
        break;
      }
  }
  for (flag_t* r : {action, subgoal, sw})
    if (r != nullptr)
      for (index_t j = 0; j < L; ++j) r[j] = static_cast<flag_t>(r[j] & bit(resp[j]));
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
