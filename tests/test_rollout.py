"""The rollout engine with a tiny random model on real ALFWorld games."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer

from hiper import models
from hiper.envs import EnvPool, EnvSpec
from hiper.envs.alfworld import SAMPLE_ROOT, list_games
from hiper.rollout import RolloutConfig, RolloutEngine

TOKENIZER = Path(__file__).parent / "fixtures" / "smollm2_tokenizer"


@pytest.fixture(scope="module")
def tiny():
    tok = models.prepare_tokenizer(AutoTokenizer.from_pretrained(TOKENIZER))
    return models.tiny_random_model(tok), tok


def test_rollout_fills_the_buffer(tiny):
    model, tok = tiny
    games = list_games("valid_unseen", SAMPLE_ROOT)[:2]
    with EnvPool([EnvSpec("alfworld", {"game_file": str(g)}) for g in games]) as pool:
        engine = RolloutEngine(model, tok, pool, RolloutConfig(max_turns=3, max_new_tokens=16))
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


def test_tiny_model_generates(tiny):
    model, tok = tiny
    enc = tok(["hello"], return_tensors="pt")
    out = model.generate(**enc, max_new_tokens=3, do_sample=False)
    assert out.shape[1] == enc["input_ids"].shape[1] + 3


@pytest.mark.slow
def test_offline_default_model_loads():
    model, tok = models.load()
    assert model.config.model_type == "llama" and len(tok) == 49152
