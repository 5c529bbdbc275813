// Packing token rows kept as they were appended: the device trajectory buffer
// (hiper/buffer.py with device="cuda") keeps each append's (k, L) token and mask rows on the
// GPU and packs them in one pass, where the host buffer (hiper/buffer.h) compacts the masked
// tokens into arenas at append time. The layout is TrajectoryBuffer::pack's: output row i
// holds the masked tokens of its prompt source row in order, left-padded to the prompt width
// P, and those of its response source row, right-padded to the response width R; input_ids /
// attention_mask are the two side by side (P + R).
//
// A width shorter than a row's token count cuts the row (the prompt keeps its last P tokens,
// the response its first R): the caller checks the widths first unless told not to.
//
// The host twin (csrc/cpu/pack_rows.cpp) packs a row in one call of each function below; the
// CUDA kernel (csrc/cuda/pack_rows.cu) gives each row a warp, whose lanes count, place
// 32 source columns per step (the ranks of their tokens from a ballot) and pad position by
// position, with the same functions.
#pragma once

#include "hiper/common.h"

namespace hiper {

// Columns of a row of `sources`: where output row i's prompt and response come from, as
// addresses (int64) of the first token / mask byte of the source row and its length.
enum SourceColumn : int {
  kPromptTokens = 0, kPromptMask = 1, kPromptCols = 2, kResponseTokens = 3, kResponseMask = 4, kResponseCols = 5,
  kSourceColumns = 6
};

struct PackRowsParams {
  index_t rows = 0, prompt_width = 0, response_width = 0;
  int64_t pad_id = 0;
  const int64_t* sources = nullptr;  // (N, kSourceColumns)
  // (N, P), (N, R), (N, P + R) outputs; all required.
  int64_t* prompts = nullptr;
  flag_t* prompt_mask = nullptr;
  int64_t* responses = nullptr;
  flag_t* response_mask = nullptr;
  int64_t* input_ids = nullptr;
  flag_t* attention_mask = nullptr;
};

// One side (prompt or response) of output row i: its source row and where it goes.
struct PackSide {
  const int64_t* tokens;  // source row
  const flag_t* mask;
  index_t cols;
  bool left_padded;      // the prompt
  index_t width;         // P or R
  int64_t* out;          // the output row
  flag_t* out_mask;
  int64_t* ids;          // this side's part of the input_ids row
  flag_t* attention;     // and of the attention_mask row
};

HIPER_HOST_DEVICE PackSide pack_side(const PackRowsParams& p, index_t i, bool prompt) {
  const int64_t* s = p.sources + i * kSourceColumns;
  const index_t W = p.prompt_width + p.response_width;
  PackSide side;
  side.tokens = reinterpret_cast<const int64_t*>(s[prompt ? kPromptTokens : kResponseTokens]);
  side.mask = reinterpret_cast<const flag_t*>(s[prompt ? kPromptMask : kResponseMask]);
  side.cols = s[prompt ? kPromptCols : kResponseCols];
  side.left_padded = prompt;
  side.width = prompt ? p.prompt_width : p.response_width;
  side.out = (prompt ? p.prompts : p.responses) + i * side.width;
  side.out_mask = (prompt ? p.prompt_mask : p.response_mask) + i * side.width;
  side.ids = p.input_ids + i * W + (prompt ? 0 : p.prompt_width);
  side.attention = p.attention_mask + i * W + (prompt ? 0 : p.prompt_width);
  return side;
}

// Tokens kept in source columns [c0, c1).
HIPER_HOST_DEVICE index_t pack_count(const PackSide& s, index_t c0, index_t c1) {
  index_t count = 0;
  for (index_t c = c0; c < c1; ++c) count += bit(s.mask[c]);
  return count;
}

// Output position of the token of rank r (0-based among the row's `count` kept tokens), or
// a position outside [0, width) when the width cuts it.
HIPER_HOST_DEVICE index_t pack_position(const PackSide& s, index_t count, index_t r) {
  return s.left_padded ? s.width - count + r : r;
}

// Places the kept tokens of source columns [c0, c1), the first of which has rank r0.
HIPER_HOST_DEVICE void pack_tokens(const PackSide& s, index_t count, index_t c0, index_t c1, index_t r0) {
  index_t r = r0;
  for (index_t c = c0; c < c1; ++c) {
    if (s.mask[c] == 0) continue;
    const index_t j = pack_position(s, count, r++);
    if (j < 0 || j >= s.width) continue;
    s.out[j] = s.tokens[c];
    s.ids[j] = s.tokens[c];
  }
}

// Output positions [j0, j1): the masks everywhere, the padding where no token goes.
HIPER_HOST_DEVICE void pack_pad(const PackSide& s, index_t count, int64_t pad_id, index_t j0, index_t j1) {
  const index_t kept = count < s.width ? count : s.width;
  const index_t first = s.left_padded ? s.width - kept : 0;  // tokens fill [first, first + kept)
  for (index_t j = j0; j < j1; ++j) {
    const bool token = j >= first && j < first + kept;
    s.out_mask[j] = token;
    s.attention[j] = token;
    if (!token) {
      s.out[j] = pad_id;
      s.ids[j] = pad_id;
    }
  }
}

// Row i, sequentially (the host twin).
HIPER_HOST_DEVICE void pack_row(const PackRowsParams& p, index_t i) {
  for (int side = 0; side < 2; ++side) {
    const PackSide s = pack_side(p, i, side == 0);
    const index_t count = pack_count(s, 0, s.cols);
    pack_tokens(s, count, 0, s.cols, 0);
    pack_pad(s, count, p.pad_id, 0, s.width);
  }
}

}  // namespace hiper
