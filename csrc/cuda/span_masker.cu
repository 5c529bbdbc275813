// CUDA launcher of the span masker (the twin of csrc/cpu/span_masker.cpp): one warp per row,
// running hiper/span_masker.h's token-walking search (the host runs the same functions, one
// row at a time, in mask_row_by_tokens).
//
// Per row, with lane k of the warp:
//   1. count and first valid position: lane k reads positions k, k + 32, ... (coalesced);
//      warp sum and min.
//   2. token start offsets: 32 tokens per step, each lane the piece length of one
//      (piece_length), a warp-wide inclusive scan, written to the row's slice of the
//      workspace. An id outside the vocabulary (warp min of its position) empties the row
//      and is recorded with an atomic min: the record is the same whatever the timing.
//   3. the two search passes (open tags, then close tags from each block's content): lane k
//      runs find_in_token on tokens k, k + 32, ...; the warp takes the minimum per tag,
//      which is the first occurrence, as on the host.
//   4. every lane computes the row's spans (row_spans: the same values on every lane) and
//      writes positions k, k + 32, ... of each output (write_row_masks on [j, j + 1)), so
//      each step of the warp stores 32 contiguous bytes per output.
//
// Scratch: why offsets and not the text. The host copies a row's pieces into one text, but its
// size is only bounded by L times the longest piece (81 bytes for SmolLM2: 145 MB for 3,500
// rows of 512 tokens), so a device buffer sized without reading the lengths back (a host
// synchronisation) would be that. The offsets are bounded by the input: N * (L + 1) int64,
// as large as the int64 token ids; the pieces are read in place from the device table, which
// stays in L2 (SmolLM2's is 0.3 MB).
//
// Deterministic: every result is a fixed function of the row (sums, minima, a scan in a fixed
// order); no floating point.
#include "cuda/runtime.cuh"

namespace hiper::cuda {
namespace {

constexpr int kMaskThreads = 256;  // 8 rows per block

// Inclusive prefix sum over the lanes.
__device__ index_t warp_inclusive_sum(index_t v, int lane) {
  for (int offset = 1; offset < kWarp; offset *= 2) {
    const index_t other = __shfl_up_sync(kFullWarp, v, offset);
    if (lane >= offset) v += other;
  }
  return v;
}

template <typename token_t>
__global__ void span_masks_kernel(SpanMaskParams<token_t> p, index_t* starts_ws,
                                  unsigned long long* first_invalid) {
  const index_t i = global_index() / kWarp;  // uniform across the warp
  const int lane = threadIdx.x % kWarp;
  if (i >= p.num_rows) return;  // whole warps leave together: the shuffles below see 32 lanes
  const index_t L = p.length;
  const flag_t* resp = p.response_mask + i * L;
  const token_t* ids = p.tokens + i * L;
  index_t* starts = starts_ws + i * (L + 1);

  // 1. Valid tokens (the first `count` ids are the response) and the first valid position.
  index_t count = 0, first = kNoMatch;
  for (index_t j = lane; j < L; j += kWarp) {
    const int b = bit(resp[j]);
    count += b;
    if (b != 0 && first == kNoMatch) first = j;
  }
  count = warp_sum(count);
  first = warp_min(first);

  // 2. Token start offsets.
  index_t invalid = kNoMatch, carry = 0;
  if (lane == 0) starts[0] = 0;
  for (index_t t0 = 0; t0 < count; t0 += kWarp) {  // count is uniform: every lane takes each step
    const index_t t = t0 + lane;
    index_t len = 0;
    if (t < count) {
      len = piece_length(p.vocab, static_cast<index_t>(ids[t]));
      if (len < 0) {
        if (invalid == kNoMatch) invalid = t;
        len = 0;
      }
    }
    const index_t sum = warp_inclusive_sum(len, lane);
    if (t < count) starts[t + 1] = carry + sum;
    carry += __shfl_sync(kFullWarp, sum, kWarp - 1);
  }
  invalid = warp_min(invalid);
  if (invalid != kNoMatch) {
    count = 0;  // the row is masked as an empty response, as on the host
    if (lane == 0) atomicMin(first_invalid, static_cast<unsigned long long>(i * L + invalid));
  }
  __syncwarp();  // the offsets every lane wrote are visible to the whole warp

  TokenText<token_t> text;
  text.ids = ids;
  text.starts = starts;
  text.count = count;
  text.vocab = p.vocab;

  // 3. The tag search.
  index_t open[3] = {kNoMatch, kNoMatch, kNoMatch}, close[3] = {kNoMatch, kNoMatch, kNoMatch};
  const TagNeedles opens = open_needles();
  for (index_t t = lane; t < count; t += kWarp) find_in_token(text, t, opens.needle, opens.len, opens.from, open);
  for (int k = 0; k < 3; ++k) open[k] = warp_min(open[k]);
  const TagNeedles closes = close_needles(open);
  for (index_t t = lane; t < count; t += kWarp)
    find_in_token(text, t, closes.needle, closes.len, closes.from, close);
  for (int k = 0; k < 3; ++k) close[k] = warp_min(close[k]);

  // 4. Spans and outputs.
  TagMatch m[3];
  token_text_matches(text, open, close, m);
  const RowSpans s = row_spans(p, i, text, m, starts, starts + 1, count, first == kNoMatch ? -1 : first);
  if (lane == 0 && p.is_new_subgoal != nullptr) p.is_new_subgoal[i] = s.is_new_subgoal;
  for (index_t j = lane; j < L; j += kWarp) write_row_masks(p, i, s, j, j + 1);
}

}  // namespace

size_t span_masks_workspace_bytes(index_t num_rows, index_t length) {
  Workspace ws = Workspace::measure();
  ws.take<index_t>(static_cast<size_t>(num_rows * (length + 1)));
  return ws.used();
}

template <typename token_t>
void span_masks(const SpanMaskParams<token_t>& p, int64_t* first_invalid, void* workspace, size_t workspace_bytes,
                stream_t stream_handle) {
  const cudaStream_t stream = as_stream(stream_handle);
  // All bits set: -1 as int64, above every record as unsigned.
  check(cudaMemsetAsync(first_invalid, 0xff, sizeof(int64_t), stream), "span_masks", "cudaMemsetAsync");
  if (p.num_rows == 0) return;
  Workspace ws(workspace, workspace_bytes, "span_masks");
  index_t* starts = ws.take<index_t>(static_cast<size_t>(p.num_rows * (p.length + 1)));
  const unsigned blocks = blocks_for(p.num_rows * kWarp, kMaskThreads);
  span_masks_kernel<token_t><<<blocks, kMaskThreads, 0, stream>>>(
      p, starts, reinterpret_cast<unsigned long long*>(first_invalid));
  check_launch("span_masks", "span_masks_kernel");
}

template void span_masks<int64_t>(const SpanMaskParams<int64_t>&, int64_t*, void*, size_t, stream_t);
template void span_masks<int32_t>(const SpanMaskParams<int32_t>&, int64_t*, void*, size_t, stream_t);

}  // namespace hiper::cuda
