// Advantage normalisation on the device (docs/semantics.md §4.7): masked mean and population std in
// double, two passes as on the CPU (csrc/cpu/normalize.cpp), then the update.
//
// Deterministic: each pass sums per-block partials in a fixed tree, then one block sums the
// partials in a fixed tree. The grid depends on n alone (not on the device), so the same
// input gives the same bits on every run and every GPU. The order differs from the CPU's
// four interleaved accumulators, so mean and std may differ from the CPU's in the last bits
// of a double; after rounding to float32 the normalised values agree to an ulp or so.
//
// The statistics never leave the device: the update kernel reads them from the workspace.
#include "cuda/runtime.cuh"

namespace hiper::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kMaxBlocks = 256;         // partials per array
constexpr index_t kItemsPerThread = 8;  // before the grid stops growing with n

constexpr const char* kOp = "normalize";

struct Partials {
  double sum[kMaxNormalizeArrays][kMaxBlocks];
  index_t count[kMaxNormalizeArrays][kMaxBlocks];
};

int reduce_blocks(index_t n) {
  const index_t blocks = (n + kThreads * kItemsPerThread - 1) / (kThreads * kItemsPerThread);
  return static_cast<int>(blocks < 1 ? 1 : (blocks > kMaxBlocks ? kMaxBlocks : blocks));
}

// Sums a block's values in shared memory in a fixed tree; the total ends in values[0].
template <typename T>
__device__ void block_tree_sum(T* values) {
  for (int stride = kThreads / 2; stride > 0; stride /= 2) {
    __syncthreads();
    if (threadIdx.x < stride) values[threadIdx.x] += values[threadIdx.x + stride];
  }
  __syncthreads();
}

// Pass 1 (squared = false): sum of included x and their count. Pass 2: sum of included
// (x - mean)^2, with the mean from pass 1. Weights multiply (as on the CPU), never branch.
template <bool squared>
__global__ void partial_kernel(NormalizeBatch b, const Moments* moments, Partials* partials) {
  __shared__ double sums[kThreads];
  __shared__ index_t counts[kThreads];
  const int a = blockIdx.y;
  const float* x = b.x[a];
  const flag_t* include = b.include[a];
  const double mean = squared ? moments[a].mean : 0.0;
  double sum = 0.0;
  index_t count = 0;
  const index_t stride = static_cast<index_t>(gridDim.x) * kThreads;
  for (index_t i = global_index(); i < b.n; i += stride) {
    const double w = include == nullptr ? 1.0 : static_cast<double>(bit(include[i]));
    const double v = static_cast<double>(x[i]);
    if (squared) {
      const double d = v - mean;
      sum += w * (d * d);
    } else {
      sum += w * v;
      count += include == nullptr ? 1 : bit(include[i]);
    }
  }
  sums[threadIdx.x] = sum;
  counts[threadIdx.x] = count;
  block_tree_sum(sums);
  if (!squared) block_tree_sum(counts);
  if (threadIdx.x != 0) return;
  partials->sum[a][blockIdx.x] = sums[0];
  if (!squared) partials->count[a][blockIdx.x] = counts[0];
}

// One block per array: totals of the partials, then mean (pass 1) or std (pass 2).
template <bool squared>
__global__ void final_kernel(int num_partials, const Partials* partials, Moments* moments) {
  __shared__ double sums[kThreads];
  __shared__ index_t counts[kThreads];
  const int a = blockIdx.x;
  double sum = 0.0;
  index_t count = 0;
  for (int k = threadIdx.x; k < num_partials; k += kThreads) {
    sum += partials->sum[a][k];
    if (!squared) count += partials->count[a][k];
  }
  sums[threadIdx.x] = sum;
  counts[threadIdx.x] = count;
  block_tree_sum(sums);
  if (!squared) block_tree_sum(counts);
  if (threadIdx.x != 0) return;
  Moments& m = moments[a];
  if (!squared) {
    m.count = counts[0];
    m.mean = m.count > 0 ? sums[0] / static_cast<double>(m.count) : 0.0;
    m.std = 0.0;
  } else if (m.count > 0) {
    m.std = sqrt(sums[0] / static_cast<double>(m.count));
  }
}

// out = (x - mean) / (std + eps) on included rows, x elsewhere (the CPU's blend); x when no
// row is included.
__global__ void update_kernel(NormalizeBatch b, const Moments* moments, double eps) {
  const index_t i = global_index();
  if (i >= b.n) return;
  const int a = blockIdx.y;
  const Moments m = moments[a];
  const float x = b.x[a][i];
  float y = x;
  if (m.count > 0) {
    const double inv_scale = 1.0 / (m.std + eps);
    const float z = normalize_value(x, m.mean, inv_scale);
    if (b.include[a] == nullptr) {
      y = z;
    } else {
      const float w = static_cast<float>(bit(b.include[a][i]));
      y = w * z + (1.0f - w) * x;
    }
  }
  b.out[a][i] = y;
}

struct Scratch {
  Partials* partials;
  Moments* moments;
};

Scratch carve(Workspace& ws) {
  Scratch s;
  s.partials = ws.take<Partials>(1);
  s.moments = ws.take<Moments>(kMaxNormalizeArrays);
  return s;
}

}  // namespace

size_t normalize_workspace_bytes() {
  Workspace ws = Workspace::measure();
  carve(ws);
  return ws.used();
}

void normalize(const NormalizeBatch& b, double eps, void* workspace, size_t workspace_bytes, stream_t stream_handle) {
  if (b.n == 0 || b.count == 0) return;
  if (b.count > kMaxNormalizeArrays) throw std::invalid_argument("hiper.normalize: too many arrays in one batch");
  const cudaStream_t stream = as_stream(stream_handle);
  Workspace ws(workspace, workspace_bytes, kOp);
  const Scratch s = carve(ws);
  const int blocks = reduce_blocks(b.n);
  const dim3 partial_grid(blocks, b.count);

  partial_kernel<false><<<partial_grid, kThreads, 0, stream>>>(b, s.moments, s.partials);
  check_launch(kOp, "partial_kernel (sum)");
  final_kernel<false><<<b.count, kThreads, 0, stream>>>(blocks, s.partials, s.moments);
  check_launch(kOp, "final_kernel (mean)");
  partial_kernel<true><<<partial_grid, kThreads, 0, stream>>>(b, s.moments, s.partials);
  check_launch(kOp, "partial_kernel (squares)");
  final_kernel<true><<<b.count, kThreads, 0, stream>>>(blocks, s.partials, s.moments);
  check_launch(kOp, "final_kernel (std)");
  update_kernel<<<dim3(blocks_for(b.n, kThreads), b.count), kThreads, 0, stream>>>(b, s.moments, eps);
  check_launch(kOp, "update_kernel");
}

}  // namespace hiper::cuda
