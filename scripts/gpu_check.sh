#!/usr/bin/env bash
# The CUDA backend on a machine with an NVIDIA GPU, in one command (about 7 minutes):
# build hiper with its CUDA kernels for this GPU, run the CUDA tests (CUDA vs host vs the
# float64 oracle, determinism, device errors; the span masker and the device trajectory
# buffer vs their host versions) and the host kernel tests, the GPU benchmarks (HAE, span masks),
# the training loop on the GPU (full fine-tuning and LoRA, bf16, resume, evaluation; vLLM's weight
# sync when vLLM is installed), then the CUDA tests' kernels under compute-sanitizer (memcheck,
# initcheck), and print a summary. Nothing is downloaded: the python3 on PATH must already have torch with CUDA,
# pybind11, scikit-build-core, cmake, ninja, pytest and hypothesis.
#
#     bash scripts/gpu_check.sh [LOG_DIR]      # logs default to $OUT or /tmp/hiper_gpu_check
#
# Environment: PYTHON (default python3), HIPER_CUDA_ARCH (default "native": this GPU only,
# the fastest build), HIPER_GPU_SANITIZE=0 to skip the compute-sanitizer steps.
set -uo pipefail
cd "$(dirname "$0")/.."
logs="${1:-${OUT:-/tmp/hiper_gpu_check}}"
mkdir -p "$logs"
py="${PYTHON:-python3}"
summary=()

# step NAME TIMEOUT_S COMMAND...: runs it with a time limit, logs it, keeps its verdict.
step() {
  local name=$1 limit=$2 start rc
  shift 2
  echo "== $name (limit ${limit}s)"
  start=$(date +%s)
  timeout "$limit" "$@" >"$logs/$name.log" 2>&1
  rc=$?
  tail -n 25 "$logs/$name.log"
  local verdict=PASS
  if [ "$rc" -eq 124 ]; then verdict="TIMEOUT"; elif [ "$rc" -ne 0 ]; then verdict="FAIL (exit $rc)"; fi
  summary+=("$(printf '%-24s %-16s %5ss' "$name" "$verdict" $(($(date +%s) - start)))")
  return "$rc"
}

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
"$py" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.is_available())"

step build 420 env HIPER_CUDA=ON CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" \
  CMAKE_ARGS="-DCMAKE_CUDA_ARCHITECTURES=${HIPER_CUDA_ARCH:-native}" \
  "$py" -m pip install --no-build-isolation --no-deps -v -e . || { printf '%s\n' "${summary[@]}"; exit 1; }
step device 60 "$py" -c "
import hiper, torch
assert hiper._C.cuda_compiled(), 'built without CUDA'
assert hiper.has_cuda() and torch.cuda.is_available(), 'hiper or torch sees no GPU'
print('hiper.has_cuda():', hiper.has_cuda(), '|', torch.cuda.get_device_name())
" || { printf '%s\n' "${summary[@]}"; exit 1; }
step test_cuda 300 "$py" -m pytest -q -rs -p no:cacheprovider tests/test_cuda.py
step test_cuda_masks 240 "$py" -m pytest -q -rs -p no:cacheprovider tests/test_cuda_masks.py
step test_cuda_buffer 120 "$py" -m pytest -q -rs -p no:cacheprovider tests/test_cuda_buffer.py
step test_host 240 "$py" -m pytest -q -p no:cacheprovider tests/test_core_ops.py tests/test_layout.py \
  tests/test_dropin.py
# The training loop on the GPU: the gpu profile, bf16 autocast (precision auto), full fine-tuning
# and LoRA, a checkpoint, a resume and an evaluation, with the tiny model on keychest (no data
# to fetch). vLLM's in-memory weight sync (the GPU path) where vLLM is installed.
tiny=(--env keychest --tiny-model --model tests/fixtures/smollm2_tokenizer --device cuda --engine hf
      --envs 8 --max-turns 2 --max-new-tokens 40 --progress false)
step train_cuda_full 300 bash -c "$py -m hiper train ${tiny[*]} --steps 2 --run-dir $logs/run-full --overwrite &&
  $py -m hiper train ${tiny[*]} --steps 3 --run-dir $logs/run-full --resume &&
  $py -m hiper eval --checkpoint $logs/run-full --env keychest --episodes 8 --device cuda --progress false"
step train_cuda_lora 300 bash -c "$py -m hiper train ${tiny[*]} --steps 2 --lora-rank 8 --run-dir $logs/run-lora \
  --overwrite && $py -m hiper eval --checkpoint $logs/run-lora --env keychest --episodes 8 --device cuda --progress false"
if "$py" -c "import vllm" 2>/dev/null; then
  step engines_vllm 600 "$py" -m pytest -q -rs -p no:cacheprovider tests/test_engines.py tests/test_rollout.py -k vllm
fi
step bench_hae_cuda 300 env PYTHONUNBUFFERED=1 "$py" benchmarks/bench_hae.py --device cuda \
  --trajectories 128 1024 --repeats 20
step bench_masks_cuda 180 env PYTHONUNBUFFERED=1 "$py" benchmarks/bench_masks.py --device cuda --repeats 20
step bench_buffer_cuda 120 env PYTHONUNBUFFERED=1 "$py" benchmarks/bench_buffer.py --device cuda --repeats 10
if [ "${HIPER_GPU_SANITIZE:-1}" != 0 ] && command -v compute-sanitizer >/dev/null; then
  # The CUDA parametrisations of a few tests per op ("not cpu": every test id here says
  # "cuda" through the module name); torch's own kernels run under the tool too.
  subset='not cpu and (edge_cases or layout_matches or row_scan or test_token_outputs or subgoal or many_rows or empty)'
  for tool in memcheck initcheck; do
    step "sanitize_$tool" 240 compute-sanitizer --tool "$tool" --error-exitcode 99 \
      "$py" -m pytest -q -x -p no:cacheprovider tests/test_cuda.py -k "$subset"
    step "sanitize_masks_$tool" 240 compute-sanitizer --tool "$tool" --error-exitcode 99 \
      "$py" -m pytest -q -x -p no:cacheprovider tests/test_cuda_masks.py -k "cuda_equals_host or empty or outside"
    step "sanitize_buffer_$tool" 120 compute-sanitizer --tool "$tool" --error-exitcode 99 \
      "$py" -m pytest -q -x -p no:cacheprovider tests/test_cuda_buffer.py -k "matches_the_host_buffer"
  done
fi

echo
echo "== summary (logs in $logs)"
printf '%s\n' "${summary[@]}"
