"""A first look at keychest with doors (`--game-params doors=K,key_reward=0`): K + 1 two-turn
segments and one reward, at the chest. The keychest learning test's recipe (tests/test_learning.py:
tiny model, noisy-expert warm start, 16 episodes a step, unwhitened HAE) with the game's turns
and tokens scaled to the horizon; one estimator per process:

    OMP_NUM_THREADS=1 python docs/learning/doors_pilot.py SEED ESTIMATOR [DOORS] [STEPS] >> docs/learning/doors-pilot.jsonl

Prints one JSON line: the warm start's held-out success (48 test games) and the success after
every step, and the train invalid rate of every step.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))

import test_learning as recipe  # noqa: E402  (the test's own settings)
from transformers import AutoTokenizer  # noqa: E402

from hiper.evaluate import evaluate  # noqa: E402
from hiper.models import prepare_tokenizer  # noqa: E402
from hiper.trainer import Trainer  # noqa: E402


def main(seed: int, estimator: str, doors: int = 2, steps: int = 5) -> None:
    params = f"doors={doors},key_reward=0"
    turns = 2 * doors + 2 + 2  # two turns to waste
    tokenizer = prepare_tokenizer(AutoTokenizer.from_pretrained(recipe.TOKENIZER))
    start = time.perf_counter()
    model, losses = recipe.fine_tuned(tokenizer, seed, params=params, max_turns=turns)

    def success(policy) -> float:
        return evaluate(policy, tokenizer, "keychest", recipe.EVAL_EPISODES, max_turns=turns,
                        max_new_tokens=recipe.MAX_NEW_TOKENS, seed=seed, params=params)["success_rate"]

    curve, invalid = [success(model)], []
    config = recipe.run_config(estimator, Path("runs/doors-pilot") / f"{estimator}-{doors}-{seed}", seed)
    config.game_params, config.max_turns, config.steps = params, turns, steps
    run = Trainer(config, model=model, tokenizer=tokenizer)
    for _ in range(steps):
        metrics = run.train_step()
        invalid.append(round(metrics["invalid_rate"], 3))
        curve.append(success(run.actor))
    print(json.dumps({"seed": seed, "estimator": estimator, "doors": doors, "final_sft_loss": round(losses[-1], 4),
                      "success": curve, "train_invalid_rate": invalid,
                      "seconds": round(time.perf_counter() - start, 1)}), flush=True)


if __name__ == "__main__":
    args = sys.argv[1:]
    main(int(args[0]), args[1], *(int(a) for a in args[2:]))
