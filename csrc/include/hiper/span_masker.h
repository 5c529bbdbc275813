// Span masks of the Plan-Execute turn format, computed from token ids (docs/semantics.md §2.4, §4.2).
//
// A response is `<switch>…</switch><subgoal>…</subgoal><action>…</action>`. For each row the
// masker concatenates the text of its first `count(response_mask)` tokens, each token
// contributing the UTF-8 of its *standalone* decoding (what `tokenizer.decode([id])` gives:
// exactly the token's bytes, except that a token holding a fragment of a multi-byte
// character decodes to U+FFFD; this is the text the reference method searches, so the masks
// agree with it on every input). On that text, per block:
//
//   open   = first occurrence of "<tag>"
//   close  = earliest occurrence at or after the content start of any accepted close
//            variant ("</tag>", "</tag>\n", and for subgoal/action also "]</tag>", ".</tag>",
//            ")</tag>", each with or without "\n"); on a tie the variant listed first wins
//            (see TagSet for why this reduces to one search)
//   span   = [open, close_end) with tags, [content_start, close) without; empty -> none
//   tokens = [first token whose byte end > span start, first token whose byte start >= span end)
//
// The action span falls back to the whole valid prefix. The switch decision reads the
// content of the first switch block: after stripping (Python str.strip whitespace) it starts
// a segment unless it is empty or equals KEEP case-insensitively. Value read positions:
// low = the first token starting at or after the end of the subgoal close tag (else after
// the switch close tag, when that token is a valid response token; else position 0);
// high = position 0 on segment-start turns; term = the first valid response token.
//
// Two launchers find the tags. The CPU (csrc/cpu/span_masker.cpp) copies a row's token pieces
// into one contiguous text and searches it (memchr, memcmp). The CUDA kernel
// (csrc/cuda/span_masker.cu) never builds the text, whose size is only bounded by
// L x the longest piece: it keeps each row's token start offsets (L + 1 integers) and reads
// the pieces in place (TokenText), a warp's lanes searching interleaved tokens
// (find_in_token). Everything after the search (the close-tag rule, the token spans, the
// switch decision, the value positions: row_spans; and the writes: write_row_masks) is the
// same code on both, and the token-walking search runs on the host too
// (mask_row_by_tokens, behind SpanMasker.apply(by_tokens=True)), so the CPU tests check it
// against the reference.
#pragma once

#include <cstring>

#include "hiper/common.h"

namespace hiper {

// Zero bytes the vocabulary table keeps after its last token, so a fixed-size block copy
// starting at any token stays inside the buffer.
constexpr index_t kVocabSlack = 16;

// Standalone decoded UTF-8 of every token id: bytes[offsets[id] .. offsets[id + 1]), followed
// by kVocabSlack zero bytes.
struct VocabView {
  index_t size = 0;
  const uint8_t* bytes = nullptr;
  const index_t* offsets = nullptr;  // size + 1
  index_t max_token_bytes = 0;
  // has_lt[id] != 0: the piece contains '<' (every tag starts with one), so the token-walking
  // search skips the other tokens without reading their bytes. Null: every token is read.
  const flag_t* has_lt = nullptr;  // size
};

enum class Block : int { kSwitch = 0, kSubgoal = 1, kAction = 2 };

// One block's tags. The accepted close variants are "</tag>" and "</tag>\n", and, where
// `close_prefixes` is set, the same preceded by one of its characters. The reference takes
// the earliest variant match at or after the content, the first-listed variant on a tie, so
// "\n" variants never win over their twin without it, and the match is decided by the first
// "</tag>" at or after the content: one character earlier when a prefix character precedes it
// (and still lies inside the content), else there. close_end is always that "</tag>"'s end.
struct TagSet {
  const char* open;
  const char* close;
  const char* close_prefixes;  // "" for none
};

// The tags of Block k (a function, not a table: device code cannot read host globals).
HIPER_HOST_DEVICE TagSet tag_set(int k) {
  if (k == static_cast<int>(Block::kSwitch)) return {"<switch>", "</switch>", ""};
  if (k == static_cast<int>(Block::kSubgoal)) return {"<subgoal>", "</subgoal>", "].)"};
  return {"<action>", "</action>", "].)"};
}

// strlen, callable from device code.
HIPER_HOST_DEVICE index_t c_length(const char* s) {
  index_t n = 0;
  while (s[n] != 0) ++n;
  return n;
}

// Byte positions of one tagged block in a row's text; found = false when the open tag or
// every close variant is missing.
struct TagMatch {
  bool found = false;
  index_t open = 0;           // start of "<tag>"
  index_t content = 0;        // first byte after "<tag>"
  index_t close = 0;          // start of the matched close variant
  index_t close_end = 0;      // first byte after it
};

template <typename token_t>
struct SpanMaskParams {
  index_t num_rows = 0;
  index_t length = 0;
  const token_t* tokens = nullptr;        // (N, L)
  const flag_t* response_mask = nullptr;  // (N, L)
  VocabView vocab;
  bool include_tags = false;
  const flag_t* is_boundary = nullptr;    // (N,) for value_mask_high; null: high not written
  // (N, L) outputs, each nullable.
  flag_t* action_mask = nullptr;
  flag_t* subgoal_mask = nullptr;
  flag_t* switch_mask = nullptr;
  flag_t* value_mask_high = nullptr;
  flag_t* value_mask_low = nullptr;
  flag_t* value_mask_term = nullptr;
  // (N,) outputs.
  flag_t* is_new_subgoal = nullptr;
  // Position of the first token id outside the vocabulary, or -1 (such a row is masked as an
  // empty response). Null: not written (the CUDA launcher reports the first bad (row,
  // position) of the batch instead).
  index_t* invalid_at = nullptr;
};

// Every tag starts with '<'. The masker lists the positions of '<' in a row's text once
// (`lt`, ascending) and tests each tag only there, instead of rescanning the text per tag.
// Returns the first position p >= from in `lt` where `needle` occurs, or -1.
inline index_t find_tag_start(const uint8_t* text, index_t n, const index_t* lt, index_t num_lt, index_t from,
                              const char* needle, index_t needle_len) {
  for (index_t k = 0; k < num_lt; ++k) {
    const index_t p = lt[k];
    if (p < from || p + needle_len > n) continue;
    if (std::memcmp(text + p, needle, static_cast<size_t>(needle_len)) == 0) return p;
  }
  return -1;
}

HIPER_HOST_DEVICE bool is_close_prefix(const TagSet& tags, uint8_t c) {
  if (c == 0) return false;
  for (const char* q = tags.close_prefixes; *q != 0; ++q)
    if (static_cast<uint8_t>(*q) == c) return true;
  return false;
}

// The match given the first "<tag>" (`open`, -1 if none) and the first "</tag>" at or after
// its content (`close`, -1 if none). `text` is anything indexable by byte position (a
// pointer, or a TokenText).
template <typename Text>
HIPER_HOST_DEVICE TagMatch tag_match(const TagSet& tags, const Text& text, index_t open, index_t close) {
  TagMatch m;
  if (open < 0 || close < 0) return m;
  m.found = true;
  m.open = open;
  m.content = open + c_length(tags.open);
  m.close = close;
  if (close > m.content && is_close_prefix(tags, text[close - 1])) m.close = close - 1;
  m.close_end = close + c_length(tags.close);
  return m;
}

// The CPU's search over a contiguous text and its '<' positions.
inline TagMatch find_tag(const uint8_t* text, index_t n, const index_t* lt, index_t num_lt, const TagSet& tags) {
  const index_t open_len = c_length(tags.open);
  const index_t open = find_tag_start(text, n, lt, num_lt, 0, tags.open, open_len);
  if (open < 0) return TagMatch();
  const index_t close = find_tag_start(text, n, lt, num_lt, open + open_len, tags.close, c_length(tags.close));
  return tag_match(tags, text, open, close);
}

// Token index ranges from byte ranges. starts/ends: byte span of each token (non-decreasing).
HIPER_HOST_DEVICE index_t token_ending_after(const index_t* ends, index_t count, index_t byte) {
  index_t lo = 0, hi = count;  // first i with ends[i] > byte
  while (lo < hi) {
    const index_t mid = (lo + hi) / 2;
    if (ends[mid] > byte) hi = mid; else lo = mid + 1;
  }
  return lo;
}

HIPER_HOST_DEVICE index_t token_starting_at_or_after(const index_t* starts, index_t count, index_t byte) {
  index_t lo = 0, hi = count;  // first i with starts[i] >= byte
  while (lo < hi) {
    const index_t mid = (lo + hi) / 2;
    if (starts[mid] >= byte) hi = mid; else lo = mid + 1;
  }
  return lo;
}

// Python's str.isspace() for the code point starting at text[i]; sets *len to its UTF-8 length.
template <typename Text>
HIPER_HOST_DEVICE bool python_space_at(const Text& t, index_t n, index_t i, index_t* len) {
  const uint8_t c = t[i];
  *len = 1;
  if (c < 0x80) return c == ' ' || (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x1f);
  if (c == 0xc2 && i + 1 < n) {
    *len = 2;
    const uint8_t b = t[i + 1];
    return b == 0x85 || b == 0xa0;
  }
  if (c == 0xe1 && i + 2 < n && t[i + 1] == 0x9a && t[i + 2] == 0x80) { *len = 3; return true; }  // U+1680
  if (c == 0xe2 && i + 2 < n) {
    const uint8_t b = t[i + 1], d = t[i + 2];
    const bool space = (b == 0x80 && (d <= 0x8a || d == 0xa8 || d == 0xa9 || d == 0xaf)) ||  // U+2000-200A, 2028/9, 202F
                       (b == 0x81 && d == 0x9f);                                            // U+205F
    if (space) { *len = 3; return true; }
  }
  if (c == 0xe3 && i + 2 < n && t[i + 1] == 0x80 && t[i + 2] == 0x80) { *len = 3; return true; }  // U+3000
  return false;
}

// Python's str.strip(): narrows [*b, *e) past leading and trailing whitespace code points.
template <typename Text>
HIPER_HOST_DEVICE void python_strip(const Text& t, index_t* b, index_t* e) {
  index_t len = 0;
  while (*b < *e && python_space_at(t, *e, *b, &len)) *b += len;
  while (*b < *e) {
    index_t s = *e - 1;
    while (s > *b && (t[s] & 0xc0) == 0x80) --s;  // back to the start of the last code point
    if (!python_space_at(t, *e, s, &len) || s + len != *e) break;
    *e = s;
  }
}

// The switch decision on the content text[b, e) of a switch block: after strip() and upper()
// anything but "" and "KEEP" starts a new segment. Only the ASCII letters upper-case to K, E
// and P, so the comparison is ASCII.
template <typename Text>
HIPER_HOST_DEVICE bool switch_starts_segment(const Text& t, index_t b, index_t e) {
  python_strip(t, &b, &e);
  if (b == e) return false;
  if (e - b != 4) return true;
  const char* keep = "KEEP";
  for (index_t k = 0; k < 4; ++k) {
    const uint8_t c = t[b + k];
    const uint8_t upper = (c >= 'a' && c <= 'z') ? static_cast<uint8_t>(c - 32) : c;
    if (upper != static_cast<uint8_t>(keep[k])) return true;
  }
  return false;
}

// ---------------------------------------------------------------------------------------
// From the tag matches to the outputs (both launchers).

// Token span [*t0, *t1) of a block as the reference maps it, or false when it finds none.
HIPER_HOST_DEVICE bool token_span(const TagMatch& tm, bool include_tags, const index_t* starts, const index_t* ends,
                                  index_t count, index_t* t0, index_t* t1) {
  if (!tm.found) return false;
  const index_t b = include_tags ? tm.open : tm.content;
  const index_t e = include_tags ? tm.close_end : tm.close;
  if (b >= e) return false;
  *t0 = token_ending_after(ends, count, b);
  if (*t0 >= count) return false;
  *t1 = token_starting_at_or_after(starts, count, e);
  return *t0 < *t1;
}

// What a row's outputs are made of.
struct RowSpans {
  index_t action[2] = {0, 0};  // token ranges [t0, t1), cut to the response mask when written
  index_t subgoal[2] = {0, 0};
  index_t sw[2] = {0, 0};
  bool is_new_subgoal = false;
  index_t low = -1;   // value read positions (-1: none)
  index_t high = -1;
  index_t term = -1;
};

// The row's spans, switch decision and value positions from its tag matches. Only what the
// params ask for is computed. count: valid tokens read (0 for a row with an invalid id);
// starts / ends: their byte spans in `text`; first_response: the first j with
// response_mask[i, j] (-1 if none; read only for value_mask_term).
template <typename token_t, typename Text>
HIPER_HOST_DEVICE RowSpans row_spans(const SpanMaskParams<token_t>& p, index_t i, const Text& text, const TagMatch* m,
                                     const index_t* starts, const index_t* ends, index_t count,
                                     index_t first_response) {
  const index_t L = p.length;
  const flag_t* resp = p.response_mask + i * L;
  RowSpans s;
  if (!token_span(m[static_cast<int>(Block::kAction)], p.include_tags, starts, ends, count, &s.action[0],
                  &s.action[1])) {
    s.action[0] = 0;  // no action block: the whole response is trained as the action
    s.action[1] = count;
  }
  if (!token_span(m[static_cast<int>(Block::kSubgoal)], p.include_tags, starts, ends, count, &s.subgoal[0],
                  &s.subgoal[1]))
    s.subgoal[0] = s.subgoal[1] = 0;
  if (!token_span(m[static_cast<int>(Block::kSwitch)], p.include_tags, starts, ends, count, &s.sw[0], &s.sw[1]))
    s.sw[0] = s.sw[1] = 0;
  if (p.is_new_subgoal != nullptr) {  // a missing switch block keeps the subgoal
    const TagMatch& w = m[static_cast<int>(Block::kSwitch)];
    s.is_new_subgoal = count > 0 && w.found && switch_starts_segment(text, w.content, w.close);
  }
  if (p.value_mask_low != nullptr) {
    s.low = 0;  // position 0 even when it is not a valid token, as the reference does
    const int order[2] = {static_cast<int>(Block::kSubgoal), static_cast<int>(Block::kSwitch)};
    for (int k : order) {
      if (!m[k].found) continue;
      const index_t after = token_starting_at_or_after(starts, count, m[k].close_end);
      if (after < L && resp[after] != 0) {
        s.low = after;
        break;
      }
    }
  }
  if (p.value_mask_high != nullptr) s.high = (p.is_boundary[i] != 0 && L > 0 && resp[0] != 0) ? 0 : -1;
  s.term = first_response;
  return s;
}

// Positions [j0, j1) of one output row: row[j] = (t0 <= j < t1) && resp[j] (memset outside
// the span, a vectorised byte loop inside it).
HIPER_HOST_DEVICE void write_span(flag_t* row, const flag_t* resp, index_t j0, index_t j1, index_t t0, index_t t1) {
  t0 = t0 < j0 ? j0 : (t0 > j1 ? j1 : t0);
  t1 = t1 < t0 ? t0 : (t1 > j1 ? j1 : t1);
  std::memset(row + j0, 0, static_cast<size_t>(t0 - j0));
  for (index_t j = t0; j < t1; ++j) row[j] = static_cast<flag_t>(bit(resp[j]));
  std::memset(row + t1, 0, static_cast<size_t>(j1 - t1));
}

// Positions [j0, j1) of row[j] = (j == pos), for value read positions (pos < 0: none).
HIPER_HOST_DEVICE void write_point(flag_t* row, index_t j0, index_t j1, index_t pos) {
  std::memset(row + j0, 0, static_cast<size_t>(j1 - j0));
  if (pos >= j0 && pos < j1) row[pos] = 1;
}

// Positions [j0, j1) of every requested (N, L) output of row i (the CPU writes a row in one
// call, the CUDA kernel a position per lane).
template <typename token_t>
HIPER_HOST_DEVICE void write_row_masks(const SpanMaskParams<token_t>& p, index_t i, const RowSpans& s, index_t j0,
                                       index_t j1) {
  const index_t base = i * p.length;
  const flag_t* resp = p.response_mask + base;
  if (p.action_mask != nullptr) write_span(p.action_mask + base, resp, j0, j1, s.action[0], s.action[1]);
  if (p.subgoal_mask != nullptr) write_span(p.subgoal_mask + base, resp, j0, j1, s.subgoal[0], s.subgoal[1]);
  if (p.switch_mask != nullptr) write_span(p.switch_mask + base, resp, j0, j1, s.sw[0], s.sw[1]);
  if (p.value_mask_low != nullptr) write_point(p.value_mask_low + base, j0, j1, s.low);
  if (p.value_mask_high != nullptr) write_point(p.value_mask_high + base, j0, j1, s.high);
  if (p.value_mask_term != nullptr) write_point(p.value_mask_term + base, j0, j1, s.term);
}

// ---------------------------------------------------------------------------------------
// The token-walking search (the CUDA kernel's; on the host, mask_row_by_tokens).

// Byte length of token `id`'s piece, or -1 for an id outside the vocabulary.
HIPER_HOST_DEVICE index_t piece_length(const VocabView& v, index_t id) {
  if (id < 0 || id >= v.size) return -1;
  return v.offsets[id + 1] - v.offsets[id];
}

// A row's text read in place: token t (< count, every id valid) covers bytes
// [starts[t], starts[t + 1]) and they are its piece's.
template <typename token_t>
struct TokenText {
  const token_t* ids = nullptr;
  const index_t* starts = nullptr;  // count + 1
  index_t count = 0;
  VocabView vocab;

  HIPER_HOST_DEVICE index_t size() const { return starts[count]; }
  HIPER_HOST_DEVICE const uint8_t* piece(index_t t) const {
    return vocab.bytes + vocab.offsets[static_cast<index_t>(ids[t])];
  }
  // The byte at position q (0 <= q < size()): found by bisection, so for sparse reads only.
  HIPER_HOST_DEVICE uint8_t operator[](index_t q) const {
    const index_t t = token_ending_after(starts + 1, count, q);
    return piece(t)[q - starts[t]];
  }
  // Whether `needle` (len bytes) occurs at offset o of token t, reading on into the next
  // tokens; the caller has checked that it would end inside the text.
  HIPER_HOST_DEVICE bool matches_at(index_t t, index_t o, const char* needle, index_t len) const {
    const uint8_t* q = piece(t);
    index_t end = starts[t + 1] - starts[t];
    for (index_t k = 0; k < len; ++k) {
      while (o == end) {  // (skips empty pieces too)
        ++t;
        q = piece(t);
        o = 0;
        end = starts[t + 1] - starts[t];
      }
      if (q[o] != static_cast<uint8_t>(needle[k])) return false;
      ++o;
    }
    return true;
  }
};

// The search at one token: for each k with from[k] != kNoMatch, best[k] becomes the smaller
// of itself and the first position q >= from[k] of token t's '<' bytes where needle[k]
// occurs (ending inside the text). Visiting the tokens in any grouping and order and
// combining with min gives the first occurrence at or after from[k], as find_tag_start does.
inline constexpr index_t kNoMatch = INT64_MAX;

template <typename token_t>
HIPER_HOST_DEVICE void find_in_token(const TokenText<token_t>& text, index_t t, const char* const* needle,
                                     const index_t* len, const index_t* from, index_t* best) {
  const index_t id = static_cast<index_t>(text.ids[t]);
  if (text.vocab.has_lt != nullptr && text.vocab.has_lt[id] == 0) return;
  const index_t b = text.starts[t], e = text.starts[t + 1], n = text.size();
  const uint8_t* q = text.piece(t);
  for (index_t o = 0; o < e - b; ++o) {
    if (q[o] != '<') continue;
    const index_t at = b + o;
    for (int k = 0; k < 3; ++k) {
      if (at < from[k] || at >= best[k] || at + len[k] > n) continue;
      if (text.matches_at(t, o, needle[k], len[k])) best[k] = at;
    }
  }
}

// Needles of the two search passes: the open tags from position 0, then each block's close
// tag from its content (a block without an open tag is not searched).
struct TagNeedles {
  const char* needle[3];
  index_t len[3];
  index_t from[3];
};

HIPER_HOST_DEVICE TagNeedles open_needles() {
  TagNeedles s;
  for (int k = 0; k < 3; ++k) {
    s.needle[k] = tag_set(k).open;
    s.len[k] = c_length(s.needle[k]);
    s.from[k] = 0;
  }
  return s;
}

HIPER_HOST_DEVICE TagNeedles close_needles(const index_t* open) {
  TagNeedles s;
  for (int k = 0; k < 3; ++k) {
    const TagSet tags = tag_set(k);
    s.needle[k] = tags.close;
    s.len[k] = c_length(tags.close);
    s.from[k] = open[k] == kNoMatch ? kNoMatch : open[k] + c_length(tags.open);
  }
  return s;
}

// The three blocks' matches from the two passes' results (kNoMatch: not found).
template <typename token_t>
HIPER_HOST_DEVICE void token_text_matches(const TokenText<token_t>& text, const index_t* open, const index_t* close,
                                          TagMatch* m) {
  for (int k = 0; k < 3; ++k)
    m[k] = tag_match(tag_set(k), text, open[k] == kNoMatch ? -1 : open[k], close[k] == kNoMatch ? -1 : close[k]);
}

// One row with the token-walking search, sequentially: what a CUDA warp computes for the row,
// its lanes' loops run as one. `starts`: scratch for L + 1 offsets.
template <typename token_t>
HIPER_HOST_DEVICE void mask_row_by_tokens(const SpanMaskParams<token_t>& p, index_t i, index_t* starts) {
  const index_t L = p.length;
  const flag_t* resp = p.response_mask + i * L;
  const token_t* ids = p.tokens + i * L;
  index_t count = 0, first = -1;
  for (index_t j = 0; j < L; ++j) {
    count += bit(resp[j]);
    if (first < 0 && resp[j] != 0) first = j;
  }
  index_t invalid = -1;
  starts[0] = 0;
  for (index_t t = 0; t < count; ++t) {
    const index_t len = piece_length(p.vocab, static_cast<index_t>(ids[t]));
    if (len < 0) {
      invalid = t;
      break;
    }
    starts[t + 1] = starts[t] + len;
  }
  if (p.invalid_at != nullptr) p.invalid_at[i] = invalid;
  if (invalid >= 0) count = 0;  // the row is left empty
  TokenText<token_t> text;
  text.ids = ids;
  text.starts = starts;
  text.count = count;
  text.vocab = p.vocab;
  index_t open[3] = {kNoMatch, kNoMatch, kNoMatch}, close[3] = {kNoMatch, kNoMatch, kNoMatch};
  const TagNeedles opens = open_needles();
  for (index_t t = 0; t < count; ++t) find_in_token(text, t, opens.needle, opens.len, opens.from, open);
  const TagNeedles closes = close_needles(open);
  for (index_t t = 0; t < count; ++t) find_in_token(text, t, closes.needle, closes.len, closes.from, close);
  TagMatch m[3];
  token_text_matches(text, open, close, m);
  const RowSpans s = row_spans(p, i, text, m, starts, starts + 1, count, first);
  if (p.is_new_subgoal != nullptr) p.is_new_subgoal[i] = s.is_new_subgoal;
  write_row_masks(p, i, s, 0, L);
}

}  // namespace hiper
