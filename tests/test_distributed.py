"""Data parallelism: 2 gloo ranks x B environments give the same advantages as 1 rank x 2B
environments on the same rollouts (every estimator), and torchrun trains end to end."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

import hiper
from fake_rollouts import TOKENIZER, make_rollouts
from hiper.checkpoint import open_checkpoint
from hiper.distributed import LOCAL, Reducer
from hiper.estimators import ESTIMATORS, FlatConfig, estimate

ENVS_PER_RANK, GROUP_SIZE = 3, 2  # groups of 2 over 6 environments: one group spans the ranks

def rank_share(full: dict, rank: int, envs_per_rank: int) -> dict:
    keep = (full["env_ids"] // envs_per_rank) == rank
    share = {k: v[keep.numpy()] if isinstance(v, np.ndarray) else v[keep] for k, v in full.items()}
    share["env_ids"] = share["env_ids"] - rank * envs_per_rank
    return share


def advantages(rows: dict, estimator: str, reducer: Reducer, env_offset: int) -> dict:
    masker = hiper.SpanMasker(__import__("transformers").AutoTokenizer.from_pretrained(TOKENIZER))
    batch = SimpleNamespace(**{k: rows[k] for k in ("env_ids", "turn_idx", "responses", "response_mask", "rewards",
                                                    "dones", "is_action_valid")})
    batch.layout = hiper.build_layout(batch.env_ids, batch.turn_idx)
    spans = masker(batch.responses, batch.response_mask, include_tags=True)
    hae_config = hiper.HAEConfig(norm_adv=True, bootstrap_truncated=True, keep_penalty=-0.3,
                                 keep_penalty_mode="normalized", invalid_action_penalty_coef=0.1,
                                 keep_consistency_penalty=-0.3)
    adv, loss_mask, targets = estimate(
        estimator, batch, spans=spans, values=rows["values"], masker=masker,
        groups=((batch.env_ids + env_offset) // GROUP_SIZE).numpy(), observations=rows["observations"],
        hae_config=hae_config, flat_config=FlatConfig(gamma=0.99, lam=0.95), reducer=reducer)
    return {"advantages": adv, "loss_mask": loss_mask, **{f"returns_{h}": r for h, r, _, _ in targets}}


def _rank_main(rank: int, world: int, store: str, rollouts_path: str, out_dir: str) -> None:
    torch.distributed.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    try:
        share = rank_share(torch.load(rollouts_path, weights_only=False), rank, ENVS_PER_RANK)
        reducer = Reducer(rank, world)
        results = {est: advantages(share, est, reducer, rank * ENVS_PER_RANK) for est in ESTIMATORS}
        torch.save(results, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        torch.distributed.destroy_process_group()


def test_two_ranks_equal_one_rank_on_the_same_rollouts(tmp_path):
    world = 2
    full = make_rollouts(ENVS_PER_RANK * world, seed=7)
    torch.save(full, tmp_path / "rollouts.pt")
    mp.start_processes(_rank_main, args=(world, str(tmp_path / "store"), str(tmp_path / "rollouts.pt"),
                                         str(tmp_path)), nprocs=world, start_method="spawn")
    per_rank = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(world)]
    for est in ESTIMATORS:
        single = advantages(full, est, LOCAL, 0)
        assert single["loss_mask"].any(), est
        for key, want in single.items():
            got = torch.cat([per_rank[r][est][key] for r in range(world)])
            # Same statistics from the same rows in the same order: bit for bit.
            assert torch.equal(got, want), f"{est}: {key} differs across ranks"
    # The check has teeth: a rank that normalised on its own rows alone would differ.
    alone = advantages(rank_share(full, 0, ENVS_PER_RANK), "grpo", LOCAL, 0)["advantages"]
    assert not torch.equal(alone, per_rank[0]["grpo"]["advantages"])


@pytest.mark.parametrize("estimator", ["hae", "grpo"])
def test_torchrun_trains_writes_once_and_resumes(tmp_path, estimator):
    run_dir = tmp_path / "run"
    common = ["--tiny-model", "true", "--model", TOKENIZER, "--env", "alfworld", "--split", "valid_unseen", "--data", "sample", "--envs", "1",
              "--group-size", "2", "--max-turns", "2", "--max-new-tokens", "6", "--micro-batch-size", "2",
              "--estimator", estimator, "--run-dir", str(run_dir)]
    env = dict(os.environ, OMP_NUM_THREADS="1")

    def torchrun(*extra):
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "hiper",
               "train", *common, *extra]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        return proc

    torchrun("--steps", "1")
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 1  # rank 0 alone writes
    first = json.loads(lines[0])
    assert first["step"] == 1 and first["rows"] >= 2
    state = open_checkpoint(run_dir).training_state()
    assert state.world_size == 2 and len(state.rng) == 2
    assert not torch.equal(state.rng[0]["torch"], state.rng[1]["torch"])  # each rank's own stream
    torchrun("--steps", "2", "--resume")
    assert [json.loads(x)["step"] for x in (run_dir / "metrics.jsonl").read_text().splitlines()] == [1, 2]
