"""The HiPER training loop: rollout -> span masks -> values and log-probs -> HAE -> critic
update -> actor update (SPEC §7), on a CPU or a GPU with the same code.

    trainer = Trainer(TrainConfig(env="alfworld", envs=4, steps=2, max_turns=8))
    trainer.train()            # writes metrics.jsonl and checkpoints under config.run_dir

Every stage is timed; the compiled stages (masks, HAE, packing) are reported together as a
fraction of the step. Batch padding, if a trainer needs it, must come after advantages: this
loop never pads (micro-batches are ragged in their last chunk).
"""
from __future__ import annotations

import copy
import dataclasses
import json
import os
import random
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from hiper.config import HAEConfig
from hiper.critic import Critic
from hiper.distributed import Reducer, average_gradients, broadcast_parameters, init_from_environment
from hiper.estimators import FlatConfig, check_estimator, estimate, needs_critic
from hiper.losses import clipped_value_loss, low_var_kl, masked_mean, ppo_policy_loss
from hiper.masks import SpanMasker
from hiper.policy import response_logprobs
from hiper.rollout import RolloutConfig, RolloutEngine


@dataclass
class TrainConfig:
    """Every hyperparameter of the authors' ALFWorld run (SPEC §9), with their defaults where
    they fit a CPU; `envs`, `max_new_tokens` and `steps` are the ones to raise on GPUs."""

    # what to train on
    env: str = "alfworld"
    model: str | None = None          # HF name or path; None: SmolLM2-135M-Instruct (offline)
    tiny_model: bool = False          # a tiny random model (tests, smoke runs)
    split: str = "train"
    envs: int = 4                     # environments per step (authors: 128)
    steps: int = 2                    # training steps (authors: 150)
    max_turns: int = 50
    max_new_tokens: int = 512
    max_prompt_length: int = 2048
    temperature: float = 1.0
    top_p: float = 1.0
    history_length: int = 2
    # advantage estimator: hae, or a flat baseline (gae, turn_gae, grpo, rloo, gigpo)
    estimator: str = "hae"
    group_size: int = 1               # rollouts per game in a step (GRPO/RLOO/GiGPO groups; authors: 8)
    flat_reward: str = "episode"      # what scores a turn for the flat baselines: "episode" total or own "turn" reward
    gigpo_gamma: float = 0.95
    gigpo_step_weight: float = 1.0
    gigpo_mode: str = "mean_norm"
    # HAE
    gamma: float = 1.0
    lam_turn: float = 1.0
    lam_seg: float = 0.95
    norm_adv: bool = True
    bootstrap_truncated: bool = True
    keep_penalty: float = -0.3
    keep_penalty_mode: str = "normalized"
    keep_consistency_penalty: float = -0.3
    invalid_action_penalty_coef: float = 0.1
    # optimisation
    actor_lr: float = 1e-6
    critic_lr: float = 1e-5
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    ppo_epochs: int = 1
    mini_batch_size: int = 256
    micro_batch_size: int = 4         # rows per forward (authors: 16 per GPU; 16 x 1.3k tokens fill 24 GB of CPU RAM)
    gradient_checkpointing: bool = True
    clip_ratio: float = 0.2
    clip_ratio_c: float = 3.0
    entropy_coeff: float = 0.001
    kl_coef: float = 0.01
    cliprange_value: float = 0.5
    high_value_coef: float = 1.0
    term_value_coef: float = 1.0
    shared_critic: bool = False
    # bookkeeping
    seed: int = 0
    run_dir: str = "runs/hiper"
    save_every: int = 1
    eval_every: int = 0
    eval_envs: int = 10
    eval_split: str = "valid_unseen"
    device: str = "auto"
    workers: int = 0

    def hae_config(self) -> HAEConfig:
        return HAEConfig(gamma=self.gamma, lam_turn=self.lam_turn, lam_seg=self.lam_seg, norm_adv=self.norm_adv,
                         bootstrap_truncated=self.bootstrap_truncated, keep_penalty=self.keep_penalty,
                         keep_penalty_mode=self.keep_penalty_mode,
                         invalid_action_penalty_coef=self.invalid_action_penalty_coef,
                         keep_consistency_penalty=self.keep_consistency_penalty)

    def flat_config(self) -> FlatConfig:
        return FlatConfig(gamma=self.gamma, lam=self.lam_turn, norm_adv=self.norm_adv,
                          bootstrap_truncated=self.bootstrap_truncated, reward=self.flat_reward,
                          invalid_action_penalty_coef=self.invalid_action_penalty_coef, gigpo_gamma=self.gigpo_gamma,
                          gigpo_step_weight=self.gigpo_step_weight, gigpo_mode=self.gigpo_mode)

    def __post_init__(self):
        check_estimator(self.estimator)
        if self.group_size < 1:
            raise ValueError(f"group_size: must be >= 1, got {self.group_size}")

    def rollout_config(self) -> RolloutConfig:
        return RolloutConfig(max_turns=self.max_turns, max_new_tokens=self.max_new_tokens,
                             max_prompt_length=self.max_prompt_length, temperature=self.temperature,
                             top_p=self.top_p, history_length=self.history_length)


def env_specs(env: str, count: int, split: str, max_turns: int, offset: int = 0, spread: bool = False,
              group_size: int = 1):
    """`count` environments for one rollout: count / group_size tasks, each repeated
    group_size times in a row (environment i plays task i // group_size). `offset` walks
    through the tasks step by step. `spread` picks ALFWorld games evenly over the (sorted)
    split instead, so a small evaluation covers every task type rather than the first one
    alphabetically."""
    from hiper.envs import EnvSpec

    if group_size < 1 or count % group_size:
        raise ValueError(f"group_size: must be >= 1 and divide count ({count}), got {group_size}")
    tasks = count // group_size
    if env == "alfworld":
        from hiper.envs.alfworld import list_games

        games = list_games(split)
        pick = [(i * len(games)) // tasks if spread and tasks <= len(games) else (offset + i) % len(games)
                for i in range(tasks)]
        specs = [EnvSpec("alfworld", {"game_file": str(games[k]), "max_steps": max_turns}) for k in pick]
    elif env == "textworld":
        specs = [EnvSpec("textworld", {"game": {"recipe": 2, "take": 1, "go": 1, "seed": offset + i},
                                       "max_steps": max_turns}) for i in range(tasks)]
    elif env == "scienceworld":
        specs = [EnvSpec("scienceworld", {"task": "boil", "variation": offset + i, "max_steps": max_turns})
                 for i in range(tasks)]
    else:
        raise ValueError(f"env: expected alfworld, textworld or scienceworld, got {env!r}")
    return [spec for spec in specs for _ in range(group_size)]


def _rng_state() -> dict:
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}


def _set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])


class Trainer:
    def __init__(self, config: TrainConfig, model=None, tokenizer=None, reducer: Reducer | None = None):
        from hiper import models

        self.config = cfg = config
        # Under torchrun every rank is one data-parallel worker with its own environments.
        self.reducer = reducer if reducer is not None else init_from_environment()
        rank, world = self.reducer.rank, self.reducer.world_size
        if (cfg.envs * world) % cfg.group_size:
            raise ValueError(f"group_size: must divide the environments of a step ({cfg.envs} x {world} ranks), "
                             f"got {cfg.group_size}")
        # Same seed for building the model on every rank (rank 0's weights are broadcast
        # anyway), then a per-rank stream so the ranks sample different rollouts.
        random.seed(cfg.seed)
        np.random.seed(cfg.seed)
        torch.manual_seed(cfg.seed)
        if cfg.device != "auto":
            self.device = torch.device(cfg.device)
        elif torch.cuda.is_available():
            self.device = torch.device("cuda", torch.cuda.current_device())
        else:
            self.device = torch.device("cpu")
        if model is None:
            if cfg.tiny_model:
                from transformers import AutoTokenizer

                tokenizer = models.prepare_tokenizer(AutoTokenizer.from_pretrained(
                    cfg.model or models.default_model_dir()))
                model = models.tiny_random_model(tokenizer, seed=cfg.seed)
            else:
                model, tokenizer = models.load(cfg.model)
        self.actor = model.to(self.device).eval()
        self.tokenizer = models.prepare_tokenizer(tokenizer)
        self.reference = copy.deepcopy(self.actor).eval().requires_grad_(False) if cfg.kl_coef > 0 else None
        # Critic-free estimators (GRPO, RLOO, GiGPO) build no critic at all.
        self.critic = (Critic.from_actor(self.actor, shared=cfg.shared_critic).to(self.device).eval()
                       if needs_critic(cfg.estimator) else None)
        if cfg.gradient_checkpointing:
            # Recompute activations in the backward pass: a 135M model on 1.3k-token rows
            # otherwise holds gigabytes of activations per micro-batch.
            self.actor.activation_checkpointing_enable()
            if (self.critic is not None and not cfg.shared_critic
                    and hasattr(self.critic.backbone, "activation_checkpointing_enable")):
                self.critic.backbone.activation_checkpointing_enable()
        self.actor_opt = torch.optim.AdamW(self.actor.parameters(), lr=cfg.actor_lr, weight_decay=cfg.weight_decay)
        self.critic_opt = (torch.optim.AdamW(self.critic.trainable_parameters(), lr=cfg.critic_lr,
                                             weight_decay=cfg.weight_decay) if self.critic is not None else None)
        self.masker = SpanMasker(self.tokenizer)
        broadcast_parameters(self.actor, self.reducer)
        if self.critic is not None:
            broadcast_parameters(self.critic, self.reducer)
        if self.reference is not None:
            broadcast_parameters(self.reference, self.reducer)
        random.seed(cfg.seed + rank)
        np.random.seed(cfg.seed + rank)
        torch.manual_seed(cfg.seed + rank)
        self.step = 0
        self.run_dir = Path(cfg.run_dir)
        self.autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if self.device.type == "cuda"
                         and torch.cuda.is_bf16_supported() else torch.autocast("cpu", enabled=False))

    # ------------------------------------------------------------------ micro-batched forwards
    def _chunks(self, n: int):
        size = self.config.micro_batch_size
        return [slice(i, min(i + size, n)) for i in range(0, n, size)]

    @torch.no_grad()
    def _forward_all(self, batch, fn):
        outs = []
        for sl in self._chunks(batch.num_rows):
            with self.autocast:
                outs.append(fn(batch.input_ids[sl].to(self.device), batch.attention_mask[sl].to(self.device)).float())
        return torch.cat(outs).cpu()

    # ------------------------------------------------------------------ one training step
    def train_step(self) -> dict:
        cfg, timings = self.config, {}
        t = time.perf_counter()
        from hiper.envs import EnvPool

        rank, world = self.reducer.rank, self.reducer.world_size
        # This rank's slice of the step's environments (global ids rank*envs .. +envs-1).
        specs = env_specs(cfg.env, cfg.envs * world, cfg.split, cfg.max_turns,
                          offset=self.step * (cfg.envs * world // cfg.group_size),
                          group_size=cfg.group_size)[rank * cfg.envs:(rank + 1) * cfg.envs]
        with EnvPool(specs, num_workers=cfg.workers) as pool:
            rollout = RolloutEngine(self.actor, self.tokenizer, pool, cfg.rollout_config()).run()
        batch = rollout.batch
        timings["rollout"] = time.perf_counter() - t - rollout.timings["pack"]
        timings["pack"] = rollout.timings["pack"]
        timings["generate"] = rollout.timings["generate"]
        R = batch.responses.shape[1]

        t = time.perf_counter()
        spans = self.masker(batch.responses, batch.response_mask, include_tags=True)
        timings["masks"] = time.perf_counter() - t

        values = None
        if self.critic is not None:
            t = time.perf_counter()
            values = self._forward_all(batch, lambda ids, am: self.critic.values(ids, am, R))
            timings["values"] = time.perf_counter() - t
        t = time.perf_counter()
        old_logp = self._forward_all(batch, lambda ids, am: response_logprobs(self.actor, ids, am, R))
        ref_logp = (self._forward_all(batch, lambda ids, am: response_logprobs(self.reference, ids, am, R))
                    if self.reference is not None else None)
        timings["logprobs"] = time.perf_counter() - t

        t = time.perf_counter()
        advantages, loss_mask, critic_targets = self.advantages(rollout, spans, values)
        timings["advantages"] = time.perf_counter() - t

        # Train mode only around the updates: activation checkpointing applies in train mode,
        # and generation must stay in eval mode (checkpointing disables the KV cache).
        critic_stats = {"critic_loss": 0.0}
        if self.critic is not None:
            t = time.perf_counter()
            self.critic.train()
            critic_stats = self._update_critic(batch, values, critic_targets, R)
            self.critic.eval()
            timings["critic_update"] = time.perf_counter() - t
        t = time.perf_counter()
        self.actor.train()
        actor_stats = self._update_actor(batch, old_logp, ref_logp, advantages, loss_mask, R)
        self.actor.eval()
        timings["actor_update"] = time.perf_counter() - t

        self.step += 1
        timings["total"] = sum(v for k, v in timings.items() if k != "generate")
        compiled = timings["masks"] + timings["advantages"] + timings["pack"]
        episodes = rollout.episodes
        metrics = {
            "step": self.step,
            "success_rate": rollout.success_rate,
            "episode_return": float(np.mean([e.total_reward for e in episodes])),
            "turns": float(np.mean([e.turns for e in episodes])),
            "switches_per_episode": float(np.mean([e.switches for e in episodes])),
            "switch_rate": float(spans.is_new_subgoal.float().mean()),
            "invalid_rate": float(1.0 - batch.is_action_valid.float().mean()),
            "rows": batch.num_rows,
            "loss_tokens": int(loss_mask.sum()),
            **critic_stats, **actor_stats,
            "timings": {k: round(v, 4) for k, v in timings.items()},
            "compiled_fraction": compiled / max(timings["total"], 1e-9),
        }
        return metrics

    def _minibatches(self, n: int):
        """Row index sets of the mini-batches: as many on every rank (each optimiser step is
        one gradient all-reduce), as even as possible; a rank with fewer rows may get empty ones."""
        count = self.reducer.max(max(1, -(-n // self.config.mini_batch_size)))
        return list(torch.tensor_split(torch.randperm(n), count))

    def task_groups(self, batch) -> np.ndarray:
        """(N,) the task (game) of every row, numbered globally across ranks."""
        global_env = batch.env_ids + self.reducer.rank * self.config.envs
        return (global_env // self.config.group_size).numpy()

    def advantages(self, rollout, spans, values):
        """(token advantages, loss mask, critic targets) of the configured estimator; a
        flat baseline's critic (if any) is the low-level head."""
        cfg = self.config
        return estimate(cfg.estimator, rollout.batch, spans=spans, values=values, masker=self.masker,
                        groups=self.task_groups(rollout.batch), observations=rollout.observations,
                        hae_config=cfg.hae_config(), flat_config=cfg.flat_config(),
                        head_coefs=(1.0, cfg.high_value_coef, cfg.term_value_coef), reducer=self.reducer)

    def _update_critic(self, batch, old_values, targets, R) -> dict:
        cfg = self.config
        losses = []
        for _ in range(cfg.ppo_epochs):
            for rows in self._minibatches(batch.num_rows):
                self.critic_opt.zero_grad(set_to_none=True)
                micro = [rows[i:i + cfg.micro_batch_size] for i in range(0, len(rows), cfg.micro_batch_size)]
                for idx in micro:
                    with self.autocast:
                        v = self.critic.values(batch.input_ids[idx].to(self.device),
                                               batch.attention_mask[idx].to(self.device), R).float().cpu()
                    loss = torch.zeros(())
                    for h, ret, mask, coef in targets:
                        if mask[idx].any():  # a head with no target position in this micro-batch adds nothing
                            loss = loss + coef * clipped_value_loss(v[..., h], old_values[idx][..., h], ret[idx],
                                                                    mask[idx], cfg.cliprange_value)
                    (loss / len(micro)).backward()
                    losses.append(loss.item())
                average_gradients(self.critic.trainable_parameters(), self.reducer)
                torch.nn.utils.clip_grad_norm_(self.critic.trainable_parameters(), cfg.grad_clip)
                self.critic_opt.step()
        return {"critic_loss": float(np.mean(losses)) if losses else 0.0}

    def _update_actor(self, batch, old_logp, ref_logp, advantages, loss_mask, R) -> dict:
        cfg = self.config
        stats = {"pg_loss": [], "entropy": [], "kl": [], "clip_frac": []}
        for _ in range(cfg.ppo_epochs):
            for rows in self._minibatches(batch.num_rows):
                self.actor_opt.zero_grad(set_to_none=True)
                micro = [rows[i:i + cfg.micro_batch_size] for i in range(0, len(rows), cfg.micro_batch_size)]
                for idx in micro:
                    mask = loss_mask[idx]
                    with self.autocast:
                        logp, entropy = response_logprobs(self.actor, batch.input_ids[idx].to(self.device),
                                                          batch.attention_mask[idx].to(self.device), R,
                                                          with_entropy=True)
                    logp, entropy = logp.float().cpu(), entropy.float().cpu()
                    pg, pg_stats = ppo_policy_loss(logp, old_logp[idx], advantages[idx], mask, cfg.clip_ratio,
                                                   cfg.clip_ratio_c)
                    ent = masked_mean(entropy, mask)
                    loss = pg - cfg.entropy_coeff * ent
                    if ref_logp is not None:
                        kl = masked_mean(low_var_kl(logp, ref_logp[idx]), mask)
                        loss = loss + cfg.kl_coef * kl
                        stats["kl"].append(kl.item())
                    (loss / len(micro)).backward()
                    stats["pg_loss"].append(pg.item())
                    stats["entropy"].append(ent.item())
                    stats["clip_frac"].append(pg_stats["clip_frac"])
                average_gradients(list(self.actor.parameters()), self.reducer)
                torch.nn.utils.clip_grad_norm_(self.actor.parameters(), cfg.grad_clip)
                self.actor_opt.step()
        return {k: float(np.mean(v)) if v else 0.0 for k, v in stats.items()}

    # ------------------------------------------------------------------ checkpoints
    def save_checkpoint(self) -> Path:
        """Writes run_dir/checkpoint (actor and critic weights in safetensors, optimiser, RNG
        and step) to a temporary directory first and renames it into place. Data-parallel:
        every rank calls it; the weights are the same everywhere, so rank 0 writes them with
        the RNG states of all ranks."""
        from safetensors.torch import save_file

        rng_states = self._gather_objects(_rng_state())
        target = self.run_dir / "checkpoint"
        if self.reducer.rank != 0:
            self.reducer.barrier()
            return target
        self.run_dir.mkdir(parents=True, exist_ok=True)
        target = self.run_dir / "checkpoint"
        tmp = Path(tempfile.mkdtemp(prefix=".checkpoint-", dir=self.run_dir))
        self.actor.save_pretrained(tmp / "actor")
        self.tokenizer.save_pretrained(tmp / "actor")
        if self.critic is not None:
            critic_state = {k: v.contiguous() for k, v in self.critic.state_dict().items()
                            if not (self.critic.shared and k.startswith("backbone."))}
            save_file(critic_state, str(tmp / "critic.safetensors"))
        torch.save({"actor_opt": self.actor_opt.state_dict(),
                    "critic_opt": self.critic_opt.state_dict() if self.critic_opt is not None else None,
                    "rng": rng_states, "world_size": self.reducer.world_size, "step": self.step,
                    "config": dataclasses.asdict(self.config)},
                   tmp / "trainer_state.pt")
        old = self.run_dir / ".checkpoint-old"
        if target.exists():
            os.replace(target, old)
        os.replace(tmp, target)
        shutil.rmtree(old, ignore_errors=True)
        self.reducer.barrier()
        return target

    def _gather_objects(self, obj) -> list:
        if not self.reducer.distributed:
            return [obj]
        out: list = [None] * self.reducer.world_size
        torch.distributed.all_gather_object(out, obj)
        return out

    def load_checkpoint(self, path: str | os.PathLike | None = None) -> None:
        from safetensors.torch import load_file
        from transformers import AutoModelForCausalLM

        path = Path(path) if path is not None else self.run_dir / "checkpoint"
        if not (path / "trainer_state.pt").is_file():
            raise FileNotFoundError(f"no checkpoint at {path}")
        actor = AutoModelForCausalLM.from_pretrained(path / "actor", dtype=torch.float32)
        self.actor.load_state_dict(actor.state_dict())
        if self.critic is not None:
            self.critic.load_state_dict(load_file(str(path / "critic.safetensors")), strict=not self.critic.shared)
        state = torch.load(path / "trainer_state.pt", weights_only=False)
        self.actor_opt.load_state_dict(state["actor_opt"])
        if self.critic_opt is not None:
            self.critic_opt.load_state_dict(state["critic_opt"])
        saved_world = state.get("world_size", 1)
        if saved_world != self.reducer.world_size:
            raise ValueError(f"checkpoint: written by {saved_world} rank(s), resumed with {self.reducer.world_size}; "
                             "resume with the same world size")
        rng = state["rng"]
        _set_rng_state(rng[self.reducer.rank] if isinstance(rng, list) else rng)
        self.step = state["step"]

    # ------------------------------------------------------------------ the loop
    def train(self, resume: bool = False, log=print) -> list[dict]:
        cfg = self.config
        if resume:
            self.load_checkpoint()
        main = self.reducer.rank == 0  # only rank 0 writes files and logs
        if not main:
            log = None
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if main:
            (self.run_dir / "config.json").write_text(json.dumps(dataclasses.asdict(cfg), indent=2))
        history = []
        writer = _tensorboard(self.run_dir) if main else None
        progress = _progress(cfg.steps, self.step, enabled=log is not None)
        while self.step < cfg.steps:
            metrics = self.train_step()
            if self.reducer.distributed:
                # Batch-level numbers over every rank's environments (rows: summed).
                metrics.update(self.reducer.mean({k: metrics[k] for k in _RANK_AVERAGED}))
                metrics["rows"] = int(round(self.reducer.mean({"rows": metrics["rows"]})["rows"]
                                            * self.reducer.world_size))
            if main and cfg.eval_every and self.step % cfg.eval_every == 0:
                from hiper.evaluate import evaluate

                metrics["eval"] = evaluate(self.actor, self.tokenizer, cfg.env, cfg.eval_envs, cfg.eval_split,
                                           cfg.max_turns, cfg.max_new_tokens)
            if main:
                with open(self.run_dir / "metrics.jsonl", "a") as f:
                    f.write(json.dumps(metrics) + "\n")
            history.append(metrics)
            if writer is not None:
                for key, value in _scalars(metrics):
                    writer.add_scalar(key, value, self.step)
                writer.flush()
            if progress is not None:
                progress.update(1)
                progress.set_postfix(success=f"{metrics['success_rate']:.2f}",
                                     step_s=f"{metrics['timings']['total']:.1f}")
            if log is not None:
                tm = metrics["timings"]
                log(f"step {metrics['step']}/{cfg.steps}: success {metrics['success_rate']:.2f} "
                    f"return {metrics['episode_return']:.2f} invalid {metrics['invalid_rate']:.2f} "
                    f"critic {metrics['critic_loss']:.4f} pg {metrics['pg_loss']:.4f} | "
                    + " ".join(f"{k} {v:.2f}s" for k, v in tm.items())
                    + f" | masks+HAE+pack {100 * metrics['compiled_fraction']:.3f}% of the step")
            if cfg.save_every and self.step % cfg.save_every == 0:
                self.save_checkpoint()
        if progress is not None:
            progress.close()
        if writer is not None:
            writer.close()
        return history


# Per-rank metrics averaged over ranks for the log (each rank has as many environments).
_RANK_AVERAGED = ("success_rate", "episode_return", "turns", "switches_per_episode", "switch_rate", "invalid_rate",
                  "critic_loss", "pg_loss", "entropy", "kl", "clip_frac")


def _scalars(metrics: dict, prefix: str = ""):
    """Flattened numeric metrics, e.g. ("timings/generate", 3.2), for TensorBoard."""
    for key, value in metrics.items():
        if isinstance(value, dict):
            yield from _scalars(value, f"{prefix}{key}/")
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            yield prefix + key, float(value)


def _tensorboard(run_dir: Path):
    """A TensorBoard writer in run_dir/tensorboard, when tensorboard is installed."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(log_dir=str(run_dir / "tensorboard"))


def _progress(total: int, done: int, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=done, desc="training", unit="step")


def config_from_dict(values: dict) -> TrainConfig:
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = set(values) - known
    if unknown:
        raise ValueError(f"config: unknown keys {sorted(unknown)}")
    return TrainConfig(**values)

