"""The rollout engine with a tiny random model on real ALFWorld games."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer

from engines_for_tests import ENGINE_NAMES, engine_for
from hiper import models
from hiper.envs import EnvPool, EnvSpec
from hiper.envs.alfworld import SAMPLE_ROOT, list_games
from hiper.rollout import RolloutConfig, RolloutEngine

TOKENIZER = Path(__file__).parent / "fixtures" / "smollm2_tokenizer"


@pytest.fixture(scope="module")
def tiny():
    tok = models.prepare_tokenizer(AutoTokenizer.from_pretrained(TOKENIZER))
    # head size 64: one vLLM's attention kernels take on every backend
    return models.tiny_random_model(tok, hidden_size=128, heads=2), tok


@pytest.mark.parametrize("engine_name", ENGINE_NAMES)
def test_rollout_fills_the_buffer(tiny, engine_name):
    model, tok = tiny
    games = list_games("valid_unseen", SAMPLE_ROOT)[:2]
    with EnvPool([EnvSpec("alfworld", {"game_file": str(g)}) for g in games]) as pool:
        engine = RolloutEngine(model, tok, pool, RolloutConfig(max_turns=3, max_new_tokens=16),
                               engine=engine_for(engine_name, model, tok))
        result = engine.run()
    b = result.batch
    assert b.num_rows == sum(e.turns for e in result.episodes) == 6  # random text never wins in 3 turns
    assert b.env_ids.tolist() == [0, 0, 0, 1, 1, 1] and b.turn_idx.tolist() == [0, 1, 2] * 2
    assert not b.dones.any() and not b.is_action_valid.any()  # garbage output: invalid turns, episodes go on
    assert b.responses.shape[1] <= 16
    first_prompt = tok.decode(b.prompts[0][b.prompt_mask[0]])
    assert "Current sub-goal (there is no sub-goal yet on the first step): None" in first_prompt
    assert "<|im_start|>assistant" in first_prompt
    later_prompt = tok.decode(b.prompts[1][b.prompt_mask[1]])
    assert "You have already taken 1 step(s)" in later_prompt
    assert all(t >= 0 for t in result.timings.values()) and result.timings["generate"] > 0
    # attention mask = prompt mask then response mask
    assert torch.equal(b.attention_mask, torch.cat([b.prompt_mask, b.response_mask], dim=1))


def test_engine_argument_is_checked(tiny):
    model, tok = tiny
    with EnvPool([EnvSpec("alfworld", {"game_file": str(list_games("valid_unseen", SAMPLE_ROOT)[0])})]) as pool:
        with pytest.raises(ValueError, match="engine: expected one of auto, hf, vllm"):
            RolloutEngine(model, tok, pool, engine="sglang")
        with pytest.raises(TypeError, match="engine: expected an engine name or a hiper.engines.Engine, got int"):
            RolloutEngine(model, tok, pool, engine=3)
        assert RolloutEngine(model, tok, pool).engine.name == "hf"  # the default: generate on the model


def test_tiny_model_generates(tiny):
    model, tok = tiny
    enc = tok(["hello"], return_tensors="pt")
    out = model.generate(**enc, max_new_tokens=3, do_sample=False)
    assert out.shape[1] == enc["input_ids"].shape[1] + 3


@pytest.mark.slow
def test_offline_default_model_loads():
    model, tok = models.load()
    assert model.config.model_type == "llama" and len(tok) == 49152
