"""How noisy is each estimator's policy gradient on real rollouts? (`hiper bench variance`)

From one fixed policy (SmolLM2-135M-Instruct by default) and one critic, collect K
independent rollout batches on a real environment. For every batch and every estimator,
compute the policy-gradient estimate the PPO actor would follow on its first step (the
clipped surrogate at ratio 1: -grad of the token-mean of A * log pi over the estimator's
loss mask) with respect to a parameter subset, then compare the K estimates:

    relative variance   tr Cov[g] / ||E g||^2  (unbiased trace over batches; lower is better)
    pairwise cosine     mean cosine similarity between the batches' gradients (scale-free;
                        1 = every batch points the same way)

with percentile-bootstrap confidence intervals over batches. All estimators see the same
rollouts, the same critic values and the same log-probabilities, so differences come from
the advantages alone.

The parameter subset is the last decoder layer's MLP: its gradient needs a backward pass
through one layer only, and it is not tied to the embeddings (SmolLM2 ties the LM head).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

ALL = ("hae", "gae", "turn_gae", "grpo", "rloo", "gigpo")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from hiper.flags import add_boolean_flag

    parser.add_argument("--env", choices=("alfworld", "textworld", "scienceworld"), default="alfworld",
                        help="environment family")
    parser.add_argument("--split", default="train", help="split whose games the batches play")
    parser.add_argument("--data", default=None, help="ALFWorld data root, or 'sample' (default: $ALFWORLD_DATA)")
    parser.add_argument("--batches", type=int, default=4, help="K independent rollout batches (>= 2)")
    parser.add_argument("--envs", type=int, default=4, help="environments per batch")
    parser.add_argument("--group-size", type=int, default=2, help="rollouts per game (GRPO/RLOO/GiGPO groups)")
    parser.add_argument("--max-turns", type=int, default=6, help="turns per episode")
    parser.add_argument("--max-new-tokens", type=int, default=48, help="tokens per response")
    parser.add_argument("--estimators", default=",".join(ALL), help="comma-separated estimators to compare")
    parser.add_argument("--model", default=None, help="HF name or path (default: SmolLM2-135M-Instruct, offline)")
    add_boolean_flag(parser, "--tiny-model", default=False, help="a tiny random model with --model's tokenizer "
                     "(smoke test)", hidden_alias="--tiny")
    parser.add_argument("--micro-batch-size", type=int, default=4, help="rows per forward pass")
    parser.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples for the intervals")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the model, the sampling and the games")
    parser.add_argument("--out", default="runs/variance", help="output directory")


def gradient_subset(model) -> list[torch.nn.Parameter]:
    """The last decoder layer's MLP parameters (requires_grad is switched off elsewhere)."""
    decoder = model.get_decoder() if hasattr(model, "get_decoder") else model.model
    return [p for p in decoder.layers[-1].mlp.parameters()]


def spread(gram: np.ndarray, weights: np.ndarray | None = None) -> dict:
    """Spread statistics of K gradient estimates from their Gram matrix G[i, j] = g_i . g_j
    (every statistic below is a function of it, so the bootstrap never touches the
    million-entry gradients). `weights`: how often each batch occurs in a resample (default
    once each). Relative variance tr Cov / |mean|^2 with the unbiased trace, and the mean
    cosine between distinct draws."""
    k = gram.shape[0]
    w = np.ones(k) if weights is None else np.asarray(weights, dtype=np.float64)
    n = w.sum()
    mean_sq = float(w @ gram @ w) / n**2
    trace_cov = float((w * np.diag(gram)).sum() - n * mean_sq) / (n - 1)
    norms = np.sqrt(np.maximum(np.diag(gram), 0.0))
    cos = gram / np.outer(np.where(norms > 0, norms, 1.0), np.where(norms > 0, norms, 1.0))
    pair_w = np.outer(w, w) - np.diag(w)  # ordered pairs of distinct draws
    pairs = pair_w.sum()
    return {"relative_variance": trace_cov / mean_sq if mean_sq > 0 else float("inf"),
            "pairwise_cosine": float((pair_w * cos).sum() / pairs) if pairs > 0 else float("nan"),
            "mean_norm": float(np.sqrt(max(mean_sq, 0.0))), "batch_norm": float((w * norms).sum() / n)}


def bootstrap_interval(gram: np.ndarray, key: str, resamples: int, rng) -> tuple[float, float]:
    """95% percentile interval of spread(...)[key] over batches resampled with replacement;
    resamples that repeat a single batch have no spread and are skipped."""
    k, values = gram.shape[0], []
    for _ in range(resamples):
        counts = np.bincount(rng.integers(0, k, size=k), minlength=k)
        if (counts > 0).sum() < 2:
            continue
        value = spread(gram, counts)[key]
        if np.isfinite(value):
            values.append(value)
    if not values:
        return float("nan"), float("nan")
    lo, hi = np.percentile(values, [2.5, 97.5])
    return float(lo), float(hi)


def batch_gradients(trainer, rollout, estimators, params) -> dict[str, np.ndarray]:
    """One rollout batch -> {estimator: flattened policy gradient over `params`}."""
    from hiper.estimators import estimate
    from hiper.policy import response_logprobs

    cfg, batch = trainer.config, rollout.batch
    R = batch.responses.shape[1]
    spans = trainer.masker(batch.responses, batch.response_mask, include_tags=True)
    values = trainer.critic_values(batch, R)
    credit = {}
    for name in estimators:
        adv, mask, _ = estimate(name, batch, spans=spans, values=values, masker=trainer.masker,
                                groups=trainer.task_groups(batch), observations=rollout.observations,
                                hae_config=cfg.hae_config(), flat_config=cfg.flat_config())
        credit[name] = (adv.float(), mask.float(), max(float(mask.sum()), 1.0))
    sums = {name: [torch.zeros_like(p) for p in params] for name in estimators}
    size = cfg.micro_batch_size
    for sl in (slice(i, i + size) for i in range(0, batch.num_rows, size)):
        logp = response_logprobs(trainer.actor, batch.input_ids[sl], batch.attention_mask[sl], R,
                                 temperature=trainer.config.temperature)
        for i, name in enumerate(estimators):
            adv, mask, count = credit[name]
            # -d/dtheta of the token-mean surrogate; at ratio 1 PPO's clipped loss has this gradient.
            loss = -(adv[sl] * mask[sl] * logp).sum() / count
            grads = torch.autograd.grad(loss, params, retain_graph=i + 1 < len(estimators), allow_unused=True)
            for acc, g in zip(sums[name], grads):
                if g is not None:
                    acc += g
    out = {name: torch.cat([g.reshape(-1) for g in sums[name]]).double().numpy() for name in estimators}
    out["_credited_tokens"] = {name: credit[name][1].sum().item() for name in estimators}
    return out


def run(args: argparse.Namespace) -> int:
    from hiper.envs import EnvPool
    from hiper.rollout import RolloutEngine
    from hiper.envs.registry import training_specs
    from hiper.trainer import Trainer, TrainConfig

    estimators = [e.strip() for e in args.estimators.split(",") if e.strip()]
    bad = [e for e in estimators if e not in ALL]
    if bad:
        raise SystemExit(f"--estimators: unknown {bad}; choose from {', '.join(ALL)}")
    if args.batches < 2:
        raise SystemExit("--batches: need at least 2 batches to measure a spread")
    t0 = time.perf_counter()
    config = TrainConfig(env=args.env, split=args.split, data=args.data or "", envs=args.envs, group_size=args.group_size,
                         max_turns=args.max_turns, max_new_tokens=args.max_new_tokens, model=args.model,
                         tiny_model=args.tiny_model, micro_batch_size=args.micro_batch_size, kl_coef=0.0,
                         gradient_checkpointing=False, seed=args.seed, estimator="hae")
    trainer = Trainer(config)
    trainer.actor.requires_grad_(False)
    params = gradient_subset(trainer.actor)
    for p in params:
        p.requires_grad_(True)
    print(f"set up in {time.perf_counter() - t0:.1f} s; gradient over {sum(p.numel() for p in params):,} "
          f"parameters (last decoder layer's MLP); {args.batches} batches of {args.envs} {args.env} environments")

    per_batch: dict[str, list[np.ndarray]] = {name: [] for name in estimators}
    batches_info = []
    for k in range(args.batches):
        t = time.perf_counter()
        specs = training_specs(args.env, args.split, args.envs, k, seed=args.seed, group_size=args.group_size,
                               **config.game_options())
        with EnvPool(specs) as pool:
            rollout = RolloutEngine(trainer.actor, trainer.tokenizer, pool, config.rollout_config()).run()
        t_roll = time.perf_counter() - t
        grads = batch_gradients(trainer, rollout, estimators, params)
        for name in estimators:
            per_batch[name].append(grads[name])
        info = {"batch": k, "rows": rollout.batch.num_rows, "success_rate": rollout.success_rate,
                "invalid_rate": float(1 - rollout.batch.is_action_valid.float().mean()),
                "credited_tokens": grads["_credited_tokens"], "rollout_s": round(t_roll, 1),
                "gradients_s": round(time.perf_counter() - t - t_roll, 1)}
        batches_info.append(info)
        print(f"batch {k + 1}/{args.batches}: {info['rows']} turns, success {info['success_rate']:.2f}, "
              f"invalid {info['invalid_rate']:.2f}, rollout {t_roll:.0f} s, gradients {info['gradients_s']:.0f} s")

    rng = np.random.default_rng(args.seed)
    table = {}
    for name in estimators:
        g = np.stack(per_batch[name])
        gram = g @ g.T
        row = spread(gram)
        row["relative_variance_ci"] = bootstrap_interval(gram, "relative_variance", args.bootstrap, rng)
        row["pairwise_cosine_ci"] = bootstrap_interval(gram, "pairwise_cosine", args.bootstrap, rng)
        row["zero_gradient_batches"] = int((np.abs(g).sum(axis=1) == 0).sum())
        row["gram"] = gram.tolist()
        table[name] = row
    print(format_table(table, args))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "variance.json").write_text(json.dumps({"args": vars(args), "batches": batches_info, "table": table},
                                                  indent=2, default=str))
    print(f"done in {time.perf_counter() - t0:.0f} s; numbers in {out / 'variance.json'}")
    return 0


def format_table(table: dict, args) -> str:
    lines = [f"policy-gradient spread over {args.batches} batches ({args.env}, {args.envs} envs x "
             f"{args.max_turns} turns, groups of {args.group_size}); 95% bootstrap intervals",
             f"{'estimator':<10}{'tr Cov / |mean|^2':>20}{'[95% CI]':>22}{'pairwise cos':>14}{'[95% CI]':>20}"
             f"{'|mean g|':>11}{'zero-grad':>10}"]
    for name, r in table.items():
        lo, hi = r["relative_variance_ci"]
        clo, chi = r["pairwise_cosine_ci"]
        lines.append(f"{name:<10}{r['relative_variance']:>20.3g}{f'[{lo:.3g}, {hi:.3g}]':>22}"
                     f"{r['pairwise_cosine']:>14.3f}{f'[{clo:.2f}, {chi:.2f}]':>20}{r['mean_norm']:>11.3g}"
                     f"{r['zero_gradient_batches']:>10}")
    return "\n".join(lines)
