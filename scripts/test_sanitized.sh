#!/usr/bin/env bash
# Rebuild hiper._C with AddressSanitizer and UndefinedBehaviorSanitizer (any report aborts)
# into the active environment and run the kernel tests against it. Python itself is not
# instrumented, so the ASan runtime (and libstdc++, whose exception machinery ASan
# intercepts) must be preloaded. Leave the environment with a normal build afterwards by
# re-running `pip install -e .`.
set -euo pipefail
cd "$(dirname "$0")/.."
pip install scikit-build-core pybind11 ninja
HIPER_CUDA=OFF HIPER_SANITIZE=ON pip install -e . --no-build-isolation -C build-dir=build/sanitize
LD_PRELOAD="$(gcc -print-file-name=libasan.so) $(gcc -print-file-name=libstdc++.so)" \
ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  python -m pytest -p no:cacheprovider -q tests/test_layout.py tests/test_core_ops.py tests/test_errors.py \
  tests/test_dropin.py tests/test_masks.py tests/test_buffer.py tests/test_cuda_masks.py tests/test_cuda_buffer.py \
  tests/test_threads.py tests/test_flat.py
