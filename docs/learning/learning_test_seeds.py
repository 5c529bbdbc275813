"""The learning test's recipe (tests/test_learning.py) on other seeds, with held-out success after
every step: the spread behind the test's single seed.

    OMP_NUM_THREADS=1 python docs/learning/learning_test_seeds.py 0 1 2 > docs/learning/learning-test-seeds.jsonl

Each seed: the test's warm start (a tiny model fine-tuned on a noisy expert's keychest
demonstrations), then its HAE, GRPO and control runs (HAE with every advantage negated), each
evaluated on the test's 48 held-out games after every step. One JSON line per run; about 8
minutes per seed on one core. Runs are written under runs/learning-test-seeds/.
"""
from __future__ import annotations

import copy
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))

import test_learning as recipe  # noqa: E402  (the test's own settings, warm start and control)
from transformers import AutoTokenizer  # noqa: E402

from hiper.models import prepare_tokenizer  # noqa: E402
from hiper.trainer import Trainer  # noqa: E402

RUNS = (("hae", "hae", Trainer), ("grpo", "grpo", Trainer), ("control", "hae", recipe.NegatedAdvantages))


def warm_start(tokenizer, seed: int):
    """The test's warm start on `seed` and its held-out success, printed as the seed's first line."""
    start = time.perf_counter()
    model, losses = recipe.fine_tuned(tokenizer, seed)
    warm = recipe.success_rate(model, tokenizer, seed)
    print(json.dumps({"seed": seed, "run": "warm start", "final_sft_loss": round(losses[-1], 4),
                      "success": warm, "seconds": round(time.perf_counter() - start, 1)}), flush=True)
    return model, warm


def main(seeds: list[int]) -> None:
    tokenizer = prepare_tokenizer(AutoTokenizer.from_pretrained(recipe.TOKENIZER))
    for seed in seeds:
        model, warm = warm_start(tokenizer, seed)
        for name, estimator, trainer in RUNS:
            config = recipe.run_config(estimator, Path("runs/learning-test-seeds") / f"{name}-{seed}", seed,
                                       whitened=True)  # as the published runs were made
            run = trainer(config, model=copy.deepcopy(model), tokenizer=tokenizer)
            curve, start = [], time.perf_counter()
            for _ in range(config.steps):
                run.train_step()
                curve.append(recipe.success_rate(run.actor, tokenizer, seed))
            print(json.dumps({"seed": seed, "run": name, "warm_start": warm, "success_after_each_step": curve,
                              "seconds": round(time.perf_counter() - start, 1)}), flush=True)


if __name__ == "__main__":
    main([int(arg) for arg in sys.argv[1:]] or [0])
