// CUDA launchers: the device twins of csrc/cpu/launchers.h, running the same per-item
// functions of csrc/include/hiper on the GPU.
//
// Conventions (every launcher):
//   * pointers are device pointers; the caller (hiper/ops/_cuda.py) has checked every array's
//     dtype, shape, contiguity and device, as csrc/bindings/arrays.h does for host arrays;
//   * work is enqueued on `stream` (the caller's current stream, a cudaStream_t passed as an
//     integer) of the current device, and nothing waits for it: no host synchronisation;
//   * temporaries live in a caller-provided device `workspace` of the size the matching
//     *_workspace_bytes() returns (the caller allocates it with its framework's allocator);
//   * every CUDA call and launch is checked; failures throw std::runtime_error naming the op.
//
// This header needs no CUDA headers, so the (host-compiled) bindings can include it.
#pragma once

#include <cstddef>
#include <cstdint>

#include "hiper/common.h"
#include "hiper/consistency.h"
#include "hiper/hae.h"
#include "hiper/layout.h"
#include "hiper/pack_rows.h"
#include "hiper/pipeline.h"
#include "hiper/row_scan.h"
#include "hiper/shaping.h"
#include "hiper/span_masker.h"
#include "hiper/token_outputs.h"

namespace hiper::cuda {

using stream_t = std::uintptr_t;  // a cudaStream_t, as torch hands it over

// Makes `device` the current device for the scope (kernels and CUB launch on the current
// device) and restores the previous one afterwards. Defined in device.cu.
class DeviceScope {
 public:
  explicit DeviceScope(int device);
  ~DeviceScope();
  DeviceScope(const DeviceScope&) = delete;
  DeviceScope& operator=(const DeviceScope&) = delete;

 private:
  int previous_ = -1;
  int device_ = -1;
};

// ---------------------------------------------------------------------------------------
// Trajectory layout built on the device (layout.cu).
//
// The number of trajectories T and segments S depend on the data, and reading them on the
// host would synchronise. So the offset arrays are sized for the worst case (N + 1 entries,
// of which T + 1 / S + 1 are written) and T and S stay in device memory (`meta`); kernels
// over trajectories are launched over N threads and the surplus return at once.
//
// meta (int64, kLayoutMetaSize entries):
//   [0] T   [1] S
//   [2] first row with a negative turn (-1 if none)   [3] its turn
//   [4] first sorted position repeating its predecessor's turn (-1 if none)
//   [5] that row's trajectory id   [6] its turn
// Invalid turns leave the layout well-formed (a duplicate is just one more turn), so kernels
// that read it stay in bounds either way; the caller decides when to read the record. With
// several duplicates the device names the one of the lowest trajectory id, which need not be
// the one the host names (its check runs in row order).
inline constexpr int kLayoutMetaSize = 7;

struct DeviceLayoutOutputs {
  index_t* order = nullptr;             // (N,)
  index_t* traj_offsets = nullptr;      // (N + 1,)
  index_t* seg_offsets = nullptr;       // (N + 1,)
  index_t* traj_seg_offsets = nullptr;  // (N + 1,)
  flag_t* is_boundary = nullptr;        // (N,)
  index_t* position = nullptr;          // (N,)
  int64_t* meta = nullptr;              // (kLayoutMetaSize,)
};

size_t layout_workspace_bytes(index_t n);
void build_layout(index_t n, const int64_t* traj_ids, const int64_t* turn_idx, const flag_t* is_new_subgoal,
                  const DeviceLayoutOutputs& out, void* workspace, size_t workspace_bytes, stream_t stream);

// ---------------------------------------------------------------------------------------
// Per-turn ops (hae.cu). `num_trajs` points at the layout's device count (meta[0]).
void shape_rewards(const ShapingParams& p, const index_t* num_trajs, stream_t stream);
void hae(const HAEParams& p, const index_t* num_trajs, stream_t stream);
// One thread per turn; `position` is the layout's (N,) position of each row in its trajectory.
template <typename token_t>
void subgoal_changed(const ConsistencyParams<token_t>& p, const index_t* position, stream_t stream);

// Normalisation (normalize.cu): statistics and the update in device memory, deterministic
// (fixed-shape reductions whose shape depends on n only). Up to kMaxNormalizeArrays arrays of
// n rows in one pass; out may alias x. An array with no included row is copied unchanged.
inline constexpr int kMaxNormalizeArrays = 3;
struct NormalizeBatch {
  int count = 0;
  index_t n = 0;
  const float* x[kMaxNormalizeArrays] = {nullptr, nullptr, nullptr};
  const flag_t* include[kMaxNormalizeArrays] = {nullptr, nullptr, nullptr};  // null: every row
  float* out[kMaxNormalizeArrays] = {nullptr, nullptr, nullptr};
};
size_t normalize_workspace_bytes();
void normalize(const NormalizeBatch& b, double eps, void* workspace, size_t workspace_bytes, stream_t stream);

// Shaping, HAE and (if p.normalize) normalisation (pipeline.cu).
size_t pipeline_workspace_bytes();
void hae_pipeline(PipelineParams p, const index_t* num_trajs, void* workspace, size_t workspace_bytes,
                  stream_t stream);

// ---------------------------------------------------------------------------------------
// (N, L) passes (tokens.cu).
void row_scan(const RowScanParams& p, stream_t stream);
// The workspace holds a row of zeros standing in for absent masks.
size_t token_outputs_workspace_bytes(index_t length);
void token_outputs(const TokenOutputParams& p, void* workspace, size_t workspace_bytes, stream_t stream);

// ---------------------------------------------------------------------------------------
// The device trajectory buffer's pack (pack_rows.cu): one warp per output row. p.sources is a
// device array of device addresses (see hiper/pack_rows.h), built by hiper/buffer.py from
// its bookkeeping.
void pack_rows(const PackRowsParams& p, stream_t stream);

// ---------------------------------------------------------------------------------------
// Span masks (span_masker.cu): one warp per row, the token-walking search of
// hiper/span_masker.h. p.vocab points at the device copy of the masker's table (has_lt
// included); p.invalid_at must be null. `first_invalid` (one int64) receives the smallest
// i * L + t over rows i whose token t is outside the vocabulary, or -1: the caller reads it
// when it chooses to (such rows are masked as empty responses, as on the CPU).
// The workspace holds each row's token start offsets: N * (L + 1) int64.
size_t span_masks_workspace_bytes(index_t num_rows, index_t length);
template <typename token_t>
void span_masks(const SpanMaskParams<token_t>& p, int64_t* first_invalid, void* workspace, size_t workspace_bytes,
                stream_t stream);

}  // namespace hiper::cuda
