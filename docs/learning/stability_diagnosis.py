"""What HAE's levels see, step by step, on one seed of the keychest learning test's recipe.

    OMP_NUM_THREADS=1 python docs/learning/stability_diagnosis.py SEED STEPS [name=value ...]

e.g. `... 1 5 value_scale=1.0` (the recipe before value_scale), `... 1 5 norm_adv=false`. After
every step one JSON line: the rollout's success and invalid rate, held-out success (the test's 48
games), and per level (lo: action tokens, hi: subgoal tokens of boundary turns, term: switch
tokens) the count, mean |advantage| and share of negative advantages, with each critic head's
mean value against its mean target at the positions it is read.
"""
from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))

import test_learning as recipe  # noqa: E402
import torch  # noqa: E402
from transformers import AutoTokenizer  # noqa: E402

from hiper.models import prepare_tokenizer  # noqa: E402
from hiper.trainer import FIELD_TYPES, Trainer, parse_value  # noqa: E402

HEADS = ("low", "high", "term")


class Diagnosed(Trainer):
    def advantages(self, rollout, spans, values):
        advantages, loss_mask, targets = super().advantages(rollout, spans, values)
        from hiper.hae_pipeline import hae_for_responses

        b = rollout.batch
        hae = hae_for_responses(b.responses, b.response_mask, {h: values[..., k] for k, h in enumerate(HEADS)},
                                traj_ids=b.env_ids, turn_idx=b.turn_idx, dones=b.dones, rewards=b.rewards,
                                is_action_valid=b.is_action_valid, masker=self.masker,
                                config=self.config.hae_config(), spans=spans, reducer=self.reducer)
        stats = {}
        for level in ("lo", "hi", "term"):
            on = hae.outputs[f"hae_{level}_mask"] & b.response_mask
            a = advantages[on]
            stats[level] = {"tokens": int(on.sum()), "abs_mean": round(float(a.abs().mean()), 3),
                            "negative_share": round(float((a < 0).float().mean()), 3)}
        # The action tokens' mean advantage per turn (0: "take key" when right, 1: "open chest"),
        # over the episodes the rollout won: where a critic's error points the update.
        lo = (hae.outputs["hae_lo_mask"] & b.response_mask).float()
        per_row = (advantages * lo).sum(1) / lo.sum(1).clamp_min(1)
        won = torch.as_tensor([bool(rollout.episodes[int(e)].won) for e in b.env_ids])
        stats["lo_won_by_turn"] = [round(float(per_row[won & (b.turn_idx == t) & (lo.sum(1) > 0)].mean()), 3)
                                   for t in range(int(b.turn_idx.max()) + 1)]
        for k, (head, returns, mask, _) in enumerate(targets):
            stats[f"{HEADS[head]}_value_vs_target"] = [round(float(values[..., head][mask].mean()), 3),
                                                       round(float(returns[mask].mean()), 3)]
        self.diagnosis = stats
        return advantages, loss_mask, targets


def main(seed: int, steps: int, changes: dict) -> None:
    torch.set_num_threads(1)
    tokenizer = prepare_tokenizer(AutoTokenizer.from_pretrained(recipe.TOKENIZER))
    model, _ = recipe.fine_tuned(tokenizer, seed)
    config = recipe.run_config("hae", Path(f"runs/stability-diagnosis/hae-{seed}"), seed, whitened=True)
    config.steps = steps
    for name, value in changes.items():
        setattr(config, name, value)
    print(json.dumps({"seed": seed, "warm_start": recipe.success_rate(model, tokenizer, seed), **changes,
                      "value_scale": config.value_scale}), flush=True)
    run = Diagnosed(config, model=copy.deepcopy(model), tokenizer=tokenizer)
    for _ in range(steps):
        metrics = run.train_step()
        print(json.dumps({"step": run.step, "rollout_success": metrics["success_rate"],
                          "invalid": round(metrics["invalid_rate"], 3),
                          "held_out_success": recipe.success_rate(run.actor, tokenizer, seed), **run.diagnosis}),
              flush=True)


if __name__ == "__main__":
    pairs = [a.split("=", 1) for a in sys.argv[3:]]
    main(int(sys.argv[1]), int(sys.argv[2]),
         {name: parse_value(FIELD_TYPES[name][0], value) for name, value in pairs})
