// Span masks of the Plan-Execute turn format, computed from token ids (SPEC §2.4, §4.2).
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

inline constexpr TagSet kTags[3] = {{"<switch>", "</switch>", ""},
                                    {"<subgoal>", "</subgoal>", "].)"},
                                    {"<action>", "</action>", "].)"}};

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
  index_t* invalid_at = nullptr;  // position of the first token id outside the vocabulary, or -1
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

inline TagMatch find_tag(const uint8_t* text, index_t n, const index_t* lt, index_t num_lt, const TagSet& tags) {
  TagMatch m;
  const index_t open_len = static_cast<index_t>(std::strlen(tags.open));
  const index_t close_len = static_cast<index_t>(std::strlen(tags.close));
  const index_t open = find_tag_start(text, n, lt, num_lt, 0, tags.open, open_len);
  if (open < 0) return m;
  const index_t content = open + open_len;
  const index_t close = find_tag_start(text, n, lt, num_lt, content, tags.close, close_len);
  if (close < 0) return m;
  m.found = true;
  m.open = open;
  m.content = content;
  m.close = close;
  if (close > content && text[close - 1] != 0 && std::strchr(tags.close_prefixes, text[close - 1]) != nullptr)
    m.close = close - 1;
  m.close_end = close + close_len;
  return m;
}

// Token index ranges from byte ranges. starts/ends: byte span of each token (non-decreasing).
inline index_t token_ending_after(const index_t* ends, index_t count, index_t byte) {
  index_t lo = 0, hi = count;  // first i with ends[i] > byte
  while (lo < hi) {
    const index_t mid = (lo + hi) / 2;
    if (ends[mid] > byte) hi = mid; else lo = mid + 1;
  }
  return lo;
}

inline index_t token_starting_at_or_after(const index_t* starts, index_t count, index_t byte) {
  index_t lo = 0, hi = count;  // first i with starts[i] >= byte
  while (lo < hi) {
    const index_t mid = (lo + hi) / 2;
    if (starts[mid] >= byte) hi = mid; else lo = mid + 1;
  }
  return lo;
}

// Python's str.isspace() for the code point starting at text[i]; sets *len to its UTF-8 length.
inline bool python_space_at(const uint8_t* t, index_t n, index_t i, index_t* len) {
  const uint8_t c = t[i];
  *len = 1;
  if (c < 0x80) return c == ' ' || (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x1f);
  if (c == 0xc2 && i + 1 < n) {
    *len = 2;
    return t[i + 1] == 0x85 || t[i + 1] == 0xa0;
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
inline void python_strip(const uint8_t* t, index_t* b, index_t* e) {
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
inline bool switch_starts_segment(const uint8_t* t, index_t b, index_t e) {
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

}  // namespace hiper
