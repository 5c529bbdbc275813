#!/usr/bin/env bash
# verl 0.9.1 with only what `import verl`, its DataProto and its advantage-estimator registry
# need (no vLLM, SGLang, Megatron or FSDP stack): enough to run hiper's verl integration
# tests on a CPU. A full verl training install follows verl's own instructions instead.
set -euo pipefail
pip install tensordict==0.10.0 ray==2.60.0 omegaconf==2.4.0 codetiming==1.4.0
pip install --no-deps verl==0.9.1
