"""The keychest learning test's recipe on seeds 0-9: does HAE keep its policy where GRPO does?

    OMP_NUM_THREADS=1 python docs/learning/stability_seeds.py 0 1 2 3 4 >> docs/learning/stability-seeds.jsonl
    OMP_NUM_THREADS=1 python docs/learning/stability_seeds.py --runs hae-value-norm,grpo 7 8 9

Each seed: the test's warm start (tests/test_learning.py: a tiny model fine-tuned on a noisy
expert's keychest demonstrations, seeded), then runs of its recipe (by default the first three
below), each evaluated on the test's 48 held-out games after every step. Every recipe starts
from the test's settings with whitened advantages (norm_adv true), as they were when these runs
were made; those that say so change it:

    hae                 the test's recipe as it was until it stopped whitening advantages (norm_adv true)
    hae-value-scale-10  the same with the critic predicting returns / 10
    grpo                the flat GRPO baseline (groups of 4), no critic
    hae-value-norm      HAE with running normalisation of each value head's targets (value_norm)
    hae-critic-warmup-1 HAE whose first step trains the critic only (critic_warmup 1)
    hae-value-norm-critic-warmup-1  both
    hae-value-norm-unwhitened  value_norm, and advantages not normalised by the batch's spread (norm_adv false)
    hae-value-norm-critic-epochs-8  value_norm, and 8 critic passes over each step's rollout (the actor: 2)
    hae-critic-epochs-8  8 critic passes, no value_norm
    hae-gated-10-steps  value_norm, 8 critic passes, and the actor trained only on steps whose fresh
                        rollout every head explains to 0.3 or more (min_explained_variance), 10 steps
    hae-no-truncation-bootstrap  episodes cut by the turn cap end at 0 (bootstrap_truncated false)
    hae-value-norm-no-truncation-bootstrap  both
    hae-unwhitened      advantages not normalised by the batch's spread (norm_adv false): the test's recipe now
    hae-unwhitened-no-truncation-bootstrap  norm_adv false and bootstrap_truncated false

One JSON line per run, with the per-step held-out success and, for HAE, the critic's mean high
value at segment starts against its target after every step (what lags when the policy is lost).
About 5 minutes per seed on one core. Runs are written under runs/stability-seeds/.
"""
from __future__ import annotations

import copy
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))

import test_learning as recipe  # noqa: E402  (the test's own settings and warm start)
from learning_test_seeds import warm_start  # noqa: E402  (beside this script)
from transformers import AutoTokenizer  # noqa: E402

from hiper.models import prepare_tokenizer  # noqa: E402
from hiper.trainer import Trainer  # noqa: E402

RECIPES = {"hae": ("hae", {}), "hae-value-scale-10": ("hae", {"value_scale": 10.0}), "grpo": ("grpo", {}),
           "hae-value-norm": ("hae", {"value_norm": True}), "hae-critic-warmup-1": ("hae", {"critic_warmup": 1}),
           "hae-value-norm-critic-warmup-1": ("hae", {"value_norm": True, "critic_warmup": 1}),
           "hae-value-norm-unwhitened": ("hae", {"value_norm": True, "norm_adv": False}),
           "hae-value-norm-critic-epochs-8": ("hae", {"value_norm": True, "critic_epochs": 8}),
           "hae-critic-epochs-8": ("hae", {"critic_epochs": 8}),
           "hae-gated-10-steps": ("hae", {"value_norm": True, "critic_epochs": 8, "min_explained_variance": 0.3,
                                          "steps": 10}),
           "hae-no-truncation-bootstrap": ("hae", {"bootstrap_truncated": False}),
           "hae-value-norm-no-truncation-bootstrap": ("hae", {"value_norm": True, "bootstrap_truncated": False}),
           "hae-unwhitened": ("hae", {"norm_adv": False}),
           "hae-unwhitened-no-truncation-bootstrap": ("hae", {"norm_adv": False, "bootstrap_truncated": False})}
DEFAULT_RUNS = ("hae", "hae-value-scale-10", "grpo")


class Watched(Trainer):
    """The trainer, noting the critic's mean high value at segment starts and its mean target each step."""

    def advantages(self, rollout, spans, values):
        advantages, loss_mask, targets = super().advantages(rollout, spans, values)
        self.high = None
        for head, returns, mask, _ in targets:
            if head == 1 and bool(mask.any()):
                self.high = (round(float(values[..., 1][mask].mean()), 3), round(float(returns[mask].mean()), 3))
        return advantages, loss_mask, targets


def main(seeds: list[int], runs: list[str]) -> None:
    tokenizer = prepare_tokenizer(AutoTokenizer.from_pretrained(recipe.TOKENIZER))
    for seed in seeds:
        model, warm = warm_start(tokenizer, seed)
        for name in runs:
            estimator, changes = RECIPES[name]
            start = time.perf_counter()
            config = recipe.run_config(estimator, Path("runs/stability-seeds") / f"{name}-{seed}", seed,
                                       whitened=True)  # every recipe's base (the docstring)
            for key, value in changes.items():
                setattr(config, key, value)
            run = Watched(config, model=copy.deepcopy(model), tokenizer=tokenizer)
            curve, high, invalid, updated = [warm], [], [], []
            for _ in range(config.steps):
                metrics = run.train_step()
                curve.append(recipe.success_rate(run.actor, tokenizer, seed))
                invalid.append(round(metrics["invalid_rate"], 3))
                updated.append(metrics["actor_updated"])
                high.append(getattr(run, "high", None))
            print(json.dumps({"seed": seed, "run": name, "changes": changes, "success": curve,
                              "train_invalid_rate": invalid, "actor_updated": updated,
                              "high_value_vs_target": high if estimator == "hae" else None,
                              "seconds": round(time.perf_counter() - start, 1)}), flush=True)


if __name__ == "__main__":
    args = sys.argv[1:]
    runs = list(DEFAULT_RUNS)
    if args[:1] == ["--runs"]:
        runs, args = args[1].split(","), args[2:]
        unknown = [name for name in runs if name not in RECIPES]
        if unknown:
            sys.exit(f"--runs: unknown {', '.join(unknown)}; known: {', '.join(RECIPES)}")
    main([int(a) for a in args] or list(range(10)), runs)
