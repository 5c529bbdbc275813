"""The engines the engine-level tests run over: hf always, vllm where it can be imported."""
from __future__ import annotations

import pytest

from hiper.engines import make_engine
from hiper.engines.vllm import is_available as vllm_available

ENGINE_NAMES = [
    "hf",
    pytest.param("vllm", marks=pytest.mark.skipif(not vllm_available(), reason="vLLM is not installed "
                                                                              "(bash scripts/install_vllm.sh)")),
]

# Prompt + response tokens the tests' vLLM engines are sized for.
MAX_MODEL_LEN = 4096

_vllm_engines: dict[int, tuple[object, object]] = {}  # id(model) -> (model, engine): the model kept alive


def engine_for(name: str, model, tokenizer):
    """The engine `name` for `model`; one vLLM engine per model for the whole session (each
    takes seconds to start), with the model's current weights."""
    if name == "hf":
        return make_engine("hf", model, tokenizer, max_model_len=MAX_MODEL_LEN)
    if id(model) not in _vllm_engines:
        _vllm_engines[id(model)] = model, make_engine("vllm", model, tokenizer, max_model_len=MAX_MODEL_LEN, seed=0,
                                                          enforce_eager=True)
        return _vllm_engines[id(model)][1]
    engine = _vllm_engines[id(model)][1]
    engine.sync_weights(model)
    return engine
