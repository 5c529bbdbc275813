"""How much of its targets' variance each value head explains, step by step, in the keychest
learning test's recipe (seed 0).

    OMP_NUM_THREADS=1 python docs/learning/stability_ev.py hae [name=value ...] >> docs/learning/stability-ev.jsonl
    OMP_NUM_THREADS=1 python docs/learning/stability_ev.py shuffled >> docs/learning/stability-ev.jsonl

`hae` runs the recipe (with the TrainConfig changes given, e.g. `value_norm=true critic_epochs=8`);
`shuffled` runs it with each head's critic targets permuted among its positions (the control of
tests/test_learning.py). One JSON line per step: the rollout's success and each head's explained
variance on that step's fresh rollout, read before the critic trains on it (metrics.jsonl's
`explained_variance`); then the held-out success on the test's 48 games. About 4 minutes on one core.
"""
from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))

import test_learning as recipe  # noqa: E402  (the test's settings, warm start and control)
import torch  # noqa: E402
from transformers import AutoTokenizer  # noqa: E402

from hiper.models import prepare_tokenizer  # noqa: E402
from hiper.trainer import FIELD_TYPES, Trainer, parse_value  # noqa: E402

TRAINERS = {"hae": Trainer, "shuffled": recipe.ShuffledTargets}


def main(which: str, changes: dict) -> None:
    torch.set_num_threads(1)
    tokenizer = prepare_tokenizer(AutoTokenizer.from_pretrained(recipe.TOKENIZER))
    model, _ = recipe.fine_tuned(tokenizer, recipe.SEED)
    config = recipe.run_config("hae", Path(f"runs/stability-ev/{which}"), recipe.SEED, whitened=True)
    for name, value in changes.items():
        setattr(config, name, value)
    run = TRAINERS[which](config, model=copy.deepcopy(model), tokenizer=tokenizer)
    args = [f"{name}={value}" for name, value in changes.items()]
    for metrics in run.train(log=None):
        print(json.dumps({"run": which, "args": args, "step": metrics["step"], "success": metrics["success_rate"],
                          "ev": metrics["explained_variance"]}), flush=True)
    print(json.dumps({"run": which, "args": args, "held_out": recipe.success_rate(run.actor, tokenizer)}), flush=True)


if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in TRAINERS:
        sys.exit(f"usage: stability_ev.py {{{','.join(TRAINERS)}}} [name=value ...]")
    pairs = [arg.split("=", 1) for arg in sys.argv[2:]]
    main(sys.argv[1], {name: parse_value(FIELD_TYPES[name][0], value) for name, value in pairs})
