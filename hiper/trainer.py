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
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from hiper import checkpoint, runs
from hiper.config import HAEConfig
from hiper.critic import Critic
from hiper.distributed import Reducer, average_gradients, broadcast_parameters, init_from_environment
from hiper.estimators import FlatConfig, check_estimator, estimate, needs_critic
from hiper.losses import clipped_value_loss, low_var_kl, masked_mean, ppo_policy_loss
from hiper.masks import SpanMasker
from hiper.policy import response_logprobs
from hiper.profiles import resolve_sizes
from hiper.progress import StepBar, StepEstimate, TurnProgress, update_passes
from hiper.envs.registry import evaluation_specs, game_list, task_mix, training_specs
from hiper.rollout import RolloutConfig, RolloutEngine


@dataclass
class TrainConfig:
    """Every hyperparameter of the authors' ALFWorld run (SPEC §9). The sizes left None
    (envs, max_turns, max_new_tokens, micro_batch_size) come from the profile of the device the
    run trains on (hiper.profiles: small on a CPU, the authors' per-GPU scale on a GPU); the
    Trainer fills them before building anything."""

    # what to train on
    env: str = "alfworld"             # alfworld, textworld, scienceworld, or module:attribute naming a hiper.envs.Family
    model: str | None = None          # HF name or path; None: SmolLM2-135M-Instruct (offline)
    tiny_model: bool = False          # a tiny random model (tests, smoke runs)
    split: str = "train"
    data: str = ""                    # ALFWorld data root; "sample": hiper's 12 packaged games; "": $ALFWORLD_DATA
    tasks: str = ""                   # comma-separated ALFWorld task types / ScienceWorld tasks ("": the default set)
    envs: int | None = None           # environments per step (None: the device profile's, cpu 2 / gpu 16; authors 128)
    steps: int = 2                    # training steps (authors: 150)
    max_turns: int | None = None      # turns per episode (None: the device profile's, cpu 4 / gpu 50)
    max_new_tokens: int | None = None  # tokens per response (None: the device profile's, cpu 64 / gpu 512)
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
    micro_batch_size: int | None = None  # rows per forward (None: the profile's, cpu 4 / gpu 16; authors 16 per GPU)
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
    overwrite: bool = False           # start over in a run_dir that holds a run (else refused unless resuming)
    save_every: int = 1
    eval_every: int = 0
    eval_envs: int = 10
    eval_split: str = ""              # "": the environment's held-out split (alfworld valid_unseen, textworld valid, ...)
    device: str = "auto"
    workers: int = 0
    progress: bool = True             # progress bars on stderr, per step and per rollout turn

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
        return RolloutConfig.for_env(self.env, max_turns=self.max_turns, max_new_tokens=self.max_new_tokens,
                                     max_prompt_length=self.max_prompt_length, temperature=self.temperature,
                                     top_p=self.top_p, history_length=self.history_length)

    def task_list(self) -> tuple[str, ...] | None:
        """`tasks` as a tuple (None: the environment's default set)."""
        names = tuple(t.strip() for t in self.tasks.split(",") if t.strip())
        return names or None

    def game_options(self) -> dict:
        """What selects the games besides env and split (hiper.envs.registry)."""
        return {"max_turns": self.max_turns, "data": self.data or None, "tasks": self.task_list()}


class Trainer:
    def __init__(self, config: TrainConfig, model=None, tokenizer=None, reducer: Reducer | None = None):
        from hiper import models

        # The sizes left None come from the device's profile, before anything is built from them;
        # self.config is the resolved config (what config.json and checkpoints record).
        config, self.sizes = resolve_sizes(config, models.resolve_device(config.device))
        self.config = cfg = config
        # The games are checked before any model loads: a wrong env, split, data root or task
        # list fails in a second, not after minutes of loading.
        self.split_games = len(game_list(cfg.env, cfg.split, **cfg.game_options()))
        if cfg.eval_every:
            evaluation_specs(cfg.env, cfg.eval_split or None, cfg.eval_envs, count_name="eval_envs",
                             **cfg.game_options())
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
        self.device = models.resolve_device(cfg.device)
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
            # Checkpointed layers keep no KV cache, and the training forwards need none: asking for
            # none spares a warning per update. `generate` reads use_cache from the generation
            # config, so rollouts keep their cache.
            for module in (self.actor, self.critic.backbone if self.critic is not None else None):
                if getattr(module, "config", None) is not None:
                    module.config.use_cache = False
        self.actor_opt = torch.optim.AdamW(self.actor.parameters(), lr=cfg.actor_lr, weight_decay=cfg.weight_decay)
        self.critic_opt = (torch.optim.AdamW(self.critic.trainable_parameters(), lr=cfg.critic_lr,
                                             weight_decay=cfg.weight_decay) if self.critic is not None else None)
        self.masker = SpanMasker(self.tokenizer, vocab_size=self.actor.config.vocab_size)
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
        # What train() shows while a step runs (nothing when train_step is called on its own).
        self._step_bar: StepBar | None = None
        self._rollout_bar = False
        self._on_rollout_turn: Callable[[TurnProgress], None] | None = None

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
    def _phase(self, name: str) -> None:
        if self._step_bar is not None:
            self._step_bar.phase(name)

    def train_step(self) -> dict:
        cfg, timings = self.config, {}
        t = time.perf_counter()
        from hiper.envs import EnvPool

        rank, world = self.reducer.rank, self.reducer.world_size
        # The step's games come from the split's seeded schedule (hiper.envs.registry), the same
        # on every rank; this rank plays its slice (global environments rank*envs .. +envs-1).
        step_specs = training_specs(cfg.env, cfg.split, cfg.envs * world, self.step, seed=cfg.seed,
                                    group_size=cfg.group_size, **cfg.game_options())
        specs = step_specs[rank * cfg.envs:(rank + 1) * cfg.envs]
        self._phase("rollout")
        with EnvPool(specs, num_workers=cfg.workers) as pool:
            rollout = RolloutEngine(self.actor, self.tokenizer, pool, cfg.rollout_config(), progress=self._rollout_bar,
                                    on_turn=self._on_rollout_turn).run()
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
            self._phase("values")
            t = time.perf_counter()
            values = self._forward_all(batch, lambda ids, am: self.critic.values(ids, am, R))
            timings["values"] = time.perf_counter() - t
        self._phase("log-probs")
        t = time.perf_counter()
        # Scored at the rollout's sampling temperature: the policy that produced the responses.
        T = cfg.temperature
        old_logp = self._forward_all(batch, lambda ids, am: response_logprobs(self.actor, ids, am, R, temperature=T))
        ref_logp = (self._forward_all(batch, lambda ids, am: response_logprobs(self.reference, ids, am, R,
                                                                                temperature=T))
                    if self.reference is not None else None)
        timings["logprobs"] = time.perf_counter() - t

        t = time.perf_counter()
        advantages, loss_mask, critic_targets = self.advantages(rollout, spans, values)
        timings["advantages"] = time.perf_counter() - t

        # Train mode only around the updates: activation checkpointing applies in train mode,
        # and generation must stay in eval mode (checkpointing disables the KV cache).
        critic_stats = {"critic_loss": 0.0}
        if self.critic is not None:
            self._phase("critic update")
            t = time.perf_counter()
            self.critic.train()
            critic_stats = self._update_critic(batch, values, critic_targets, R)
            self.critic.eval()
            timings["critic_update"] = time.perf_counter() - t
        self._phase("actor update")
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
            "task_types": task_mix(cfg.env, step_specs),  # environments of the step (all ranks) per task type
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

    def _token_normalisers(self, counts: list[float]) -> list[float]:
        """What a mini-batch's token means divide by on this rank: each token count averaged over
        the ranks (the global count / world size). average_gradients then averages the ranks'
        gradients, so a token weighs the same whichever rank holds it (veRL's token-mean,
        batch_num_tokens * dp_size)."""
        means = self.reducer.mean({str(k): count for k, count in enumerate(counts)})
        return [means[str(k)] for k in range(len(counts))]

    def _update_critic(self, batch, old_values, targets, R) -> dict:
        """Clipped value regression of every head on its own target positions. Each head's loss
        is a token mean over its targets in the whole mini-batch (micro-batches pass that count),
        so gradient accumulation weighs targets, not micro-batches. critic_loss is logged as the
        same coef-weighted sum of per-head token means, over every epoch's targets."""
        cfg = self.config
        if not targets:
            return {"critic_loss": 0.0}
        loss_sums = torch.zeros(len(targets), dtype=torch.float64)  # per head: the sum of its targets' losses
        target_counts = torch.zeros(len(targets), dtype=torch.float64)
        for _ in range(cfg.ppo_epochs):
            for rows in self._minibatches(batch.num_rows):
                self.critic_opt.zero_grad(set_to_none=True)
                counts = [float(mask[rows].sum()) for _, _, mask, _ in targets]
                norms = self._token_normalisers(counts)
                micro = rows.split(cfg.micro_batch_size) if len(rows) else ()  # a rank may get an empty mini-batch
                for idx in micro:
                    with self.autocast:
                        v = self.critic.values(batch.input_ids[idx].to(self.device),
                                               batch.attention_mask[idx].to(self.device), R).float().cpu()
                    loss = 0.0
                    for k, (h, ret, mask, coef) in enumerate(targets):
                        head_loss = clipped_value_loss(v[..., h], old_values[idx][..., h], ret[idx], mask[idx],
                                                       cfg.cliprange_value, token_count=norms[k])
                        loss = loss + coef * head_loss
                        loss_sums[k] += head_loss.item() * norms[k]
                    loss.backward()
                target_counts += torch.tensor(counts, dtype=torch.float64)
                average_gradients(self.critic.trainable_parameters(), self.reducer)
                torch.nn.utils.clip_grad_norm_(self.critic.trainable_parameters(), cfg.grad_clip)
                self.critic_opt.step()
        coefs = torch.tensor([coef for *_, coef in targets], dtype=torch.float64)
        return {"critic_loss": float((coefs * loss_sums / target_counts.clamp_min(1.0)).sum())}

    def _update_actor(self, batch, old_logp, ref_logp, advantages, loss_mask, R) -> dict:
        """PPO update: dual-clip surrogate, entropy bonus and k3 KL to the reference, each a
        token mean over the loss mask of the whole mini-batch (micro-batches pass its token
        count, so gradient accumulation weighs tokens, not micro-batches). The logged stats are
        token means over every epoch's tokens."""
        cfg = self.config
        sums = dict.fromkeys(("pg_loss", "entropy", "kl", "clip_frac"), 0.0)  # token sums
        tokens = 0.0
        for _ in range(cfg.ppo_epochs):
            for rows in self._minibatches(batch.num_rows):
                self.actor_opt.zero_grad(set_to_none=True)
                count = float(loss_mask[rows].sum())
                (norm,) = self._token_normalisers([count])
                micro = rows.split(cfg.micro_batch_size) if len(rows) else ()  # a rank may get an empty mini-batch
                for idx in micro:
                    mask = loss_mask[idx]
                    with self.autocast:
                        logp, entropy = response_logprobs(self.actor, batch.input_ids[idx].to(self.device),
                                                          batch.attention_mask[idx].to(self.device), R,
                                                          with_entropy=True, temperature=cfg.temperature)
                    logp, entropy = logp.float().cpu(), entropy.float().cpu()
                    pg, pg_stats = ppo_policy_loss(logp, old_logp[idx], advantages[idx], mask, cfg.clip_ratio,
                                                   cfg.clip_ratio_c, token_count=norm)
                    ent = masked_mean(entropy, mask, norm)
                    loss = pg - cfg.entropy_coeff * ent
                    parts = {"pg_loss": pg.item(), "entropy": ent.item(), "clip_frac": pg_stats["clip_frac"]}
                    if ref_logp is not None:
                        kl = masked_mean(low_var_kl(logp, ref_logp[idx]), mask, norm)
                        loss = loss + cfg.kl_coef * kl
                        parts["kl"] = kl.item()
                    loss.backward()
                    for key, value in parts.items():
                        sums[key] += value * norm  # this micro-batch's token sum
                tokens += count
                average_gradients(list(self.actor.parameters()), self.reducer)
                torch.nn.utils.clip_grad_norm_(self.actor.parameters(), cfg.grad_clip)
                self.actor_opt.step()
        return {key: value / max(tokens, 1.0) for key, value in sums.items()}

    # ------------------------------------------------------------------ checkpoints
    def save_checkpoint(self) -> checkpoint.Checkpoint | None:
        """Writes run_dir/checkpoint (weights, optimisers, RNG states, step; crash-safe and
        pickle-free, see hiper.checkpoint) and returns it, with its size. Data-parallel: every
        rank calls it; the weights are the same everywhere, so rank 0 writes them with the RNG
        states of all ranks, and the other ranks return None."""
        rng_states = self._gather_objects(checkpoint.capture_rng_state(self.device))
        if self.reducer.rank != 0:
            self.reducer.barrier()
            return None
        critic_state = None
        if self.critic is not None:
            critic_state = {k: v.contiguous() for k, v in self.critic.state_dict().items()
                            if not (self.critic.shared and k.startswith("backbone."))}
        optimizers = {"actor": self.actor_opt.state_dict(),
                      "critic": self.critic_opt.state_dict() if self.critic_opt is not None else None}
        state = checkpoint.TrainingState(step=self.step, world_size=self.reducer.world_size,
                                         config=dataclasses.asdict(self.config), optimizers=optimizers,
                                         rng=rng_states)
        saved = checkpoint.save(self.run_dir, actor=self.actor, tokenizer=self.tokenizer, critic_state=critic_state,
                                state=state)
        self.reducer.barrier()
        return saved

    def _gather_objects(self, obj) -> list:
        if not self.reducer.distributed:
            return [obj]
        out: list = [None] * self.reducer.world_size
        torch.distributed.all_gather_object(out, obj)
        return out

    def load_checkpoint(self, path: str | os.PathLike | None = None) -> checkpoint.Checkpoint:
        """Restores weights, optimisers, this rank's RNG states and the step from `path` (a
        checkpoint, or a run directory: its latest complete checkpoint; default: run_dir).
        The world size must be the one that wrote it."""
        ckpt = checkpoint.open_checkpoint(self.run_dir if path is None else path,
                                          argument="run_dir" if path is None else "path")
        state = ckpt.training_state()
        if state.world_size != self.reducer.world_size or len(state.rng) != state.world_size:
            raise ValueError(f"checkpoint: written by {state.world_size} rank(s), resumed with "
                             f"{self.reducer.world_size}; resume with the same world size")
        critic_state = ckpt.critic_state()
        if (critic_state is None) != (self.critic is None):
            holds, trains = ("no critic", "one") if critic_state is None else ("a critic", "none")
            raise ValueError(f"checkpoint: {ckpt.path} holds {holds}, but estimator {self.config.estimator!r} trains "
                             f"{trains}; resume with the estimator that wrote it")
        actor, _ = ckpt.load_actor(with_tokenizer=False)
        self.actor.load_state_dict(actor.state_dict())
        if self.critic is not None:
            self.critic.load_state_dict(critic_state, strict=not self.critic.shared)
        self.actor_opt.load_state_dict(state.optimizers["actor"])
        if self.critic_opt is not None:
            self.critic_opt.load_state_dict(state.optimizers["critic"])
        checkpoint.restore_rng_state(state.rng[self.reducer.rank], self.device)
        self.step = state.step
        return ckpt

    # ------------------------------------------------------------------ the loop
    def train(self, resume: bool = False, log=print) -> list[dict]:
        """Trains to config.steps. A new run refuses a run_dir holding a run unless
        config.overwrite; `resume` continues from run_dir's checkpoint, first cutting the
        metrics (file and TensorBoard) back to the checkpoint's step."""
        cfg = self.config
        main = self.reducer.rank == 0  # only rank 0 writes files and logs
        if resume:
            if cfg.overwrite:
                raise ValueError("overwrite: a resumed run continues its run_dir; pass --resume or --overwrite, "
                                 "not both")
            self.load_checkpoint()
            if main:
                runs.truncate_metrics(self.run_dir, self.step)
        else:
            self._claim_run_dir()
        if not main:
            log = None
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if main:
            (self.run_dir / "config.json").write_text(json.dumps(dataclasses.asdict(cfg), indent=2))
        history = []
        # On resume, TensorBoard hides the events logged after the checkpoint (they are logged again).
        writer = _tensorboard(self.run_dir, purge_step=self.step + 1 if resume else None) if main else None
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

                metrics["eval"] = evaluate(self.actor, self.tokenizer, cfg.env, cfg.eval_envs, cfg.eval_split or None,
                                           cfg.max_turns, cfg.max_new_tokens, data=cfg.data or None,
                                           tasks=cfg.task_list())
            if main:
                runs.append_metrics(self.run_dir, metrics)
            history.append(metrics)
            if writer is not None:
                for key, value in _scalars(metrics):
                    writer.add_scalar(key, value, self.step)
                writer.flush()
            if progress is not None:
                progress.update(1)
                progress.set_postfix(success=f"{metrics['success_rate']:.2f}",
                                     step_s=f"{metrics['timings']['total']:.1f}")
            saved = self.save_checkpoint() if cfg.save_every and self.step % cfg.save_every == 0 else None
            if log is not None:
                tm = metrics["timings"]
                log(f"step {metrics['step']}/{cfg.steps}: success {metrics['success_rate']:.2f} "
                    f"return {metrics['episode_return']:.2f} invalid {metrics['invalid_rate']:.2f} "
                    f"critic {metrics['critic_loss']:.4f} pg {metrics['pg_loss']:.4f} | "
                    + " ".join(f"{k} {v:.2f}s" for k, v in tm.items())
                    + f" | masks+HAE+pack {100 * metrics['compiled_fraction']:.3f}% of the step"
                    + (f" | ckpt {checkpoint.format_size(saved.size_bytes)}" if saved is not None else ""))
        if progress is not None:
            progress.close()
        if writer is not None:
            writer.close()
        return history

    def _claim_run_dir(self) -> None:
        """A new run: refuse a run_dir that holds another run, or clear it with config.overwrite.
        Rank 0 decides for every rank, so none is left waiting for a rank that raised."""
        found = runs.existing_run(self.run_dir) if self.reducer.rank == 0 and not self.config.overwrite else []
        if self.reducer.max(len(found)) > 0:
            raise ValueError(f"run_dir: {self.run_dir} already holds a run ({', '.join(found) or 'see rank 0'}); "
                             "pass --resume to continue it or --overwrite true to start it over")
        if self.reducer.rank == 0 and self.config.overwrite:
            runs.clear_run(self.run_dir)


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


def _tensorboard(directory: Path, purge_step: int | None = None):
    """A TensorBoard writer in run_dir/tensorboard, when tensorboard is installed; events from
    purge_step on, written before, are hidden (those of steps after a resumed checkpoint)."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(log_dir=str(directory / runs.TENSORBOARD), purge_step=purge_step)


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

