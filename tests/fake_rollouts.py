"""Fake multi-turn rollouts in the Plan-Execute format, tokenized with the SmolLM2 tokenizer
fixture: what RolloutEngine.run() would pack, without a model or an environment."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

TOKENIZER = str(Path(__file__).parent / "fixtures" / "smollm2_tokenizer")
LENGTH = 40

SNIPPETS = ["<switch>SWITCH</switch><subgoal>find the key</subgoal><action>go to desk 1</action>",
            "<switch>KEEP</switch><subgoal>find the key</subgoal><action>open drawer 2</action>",
            "<switch>KEEP</switch><subgoal>find the mug</subgoal><action>take mug 1</action>",
            "I will just look around.",
            "<switch>SWITCH</switch><subgoal>heat the mug</subgoal><action>go to microwave 1</action>"]


def make_rollouts(num_envs: int, seed: int = 0) -> dict:
    """Environment-major rows of a fake rollout: what RolloutEngine.run() would pack."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(TOKENIZER)
    rng = np.random.default_rng(seed)
    env, turn = [], []
    for e in range(num_envs):
        t = int(rng.integers(1, 6))
        env += [e] * t
        turn += list(range(t))
    n = len(env)
    responses = torch.full((n, LENGTH), tok.pad_token_id or 0, dtype=torch.long)
    mask = torch.zeros(n, LENGTH, dtype=torch.bool)
    for i, k in enumerate(rng.integers(0, len(SNIPPETS), size=n)):
        ids = tok(SNIPPETS[k], add_special_tokens=False)["input_ids"][:LENGTH]
        responses[i, :len(ids)] = torch.tensor(ids)
        mask[i, :len(ids)] = True
    env_t, turn_t = torch.tensor(env), torch.tensor(turn)
    last = torch.ones(n, dtype=torch.bool)
    last[:-1] = env_t[1:] != env_t[:-1]
    return dict(env_ids=env_t, turn_idx=turn_t, responses=responses, response_mask=mask,
                rewards=torch.as_tensor((rng.random(n) < 0.3) * 10.0, dtype=torch.float32),
                dones=last & torch.as_tensor(rng.random(n) < 0.7), is_action_valid=torch.as_tensor(rng.random(n) < 0.8),
                values=torch.as_tensor(rng.normal(size=(n, LENGTH, 3)).astype(np.float32)),
                observations=np.array([f"obs {k}" for k in rng.integers(0, 3, size=n)], dtype=object))


