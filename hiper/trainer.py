"""The HiPER training loop: rollout -> span masks -> values and log-probs -> HAE -> critic
update -> actor update (docs/semantics.md §7), on a CPU or a GPU with the same code.

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
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from hiper import checkpoint, critic_features, lora_base, models, run_log, runs
from hiper.critic import Critic, critic_ready, explained_variance
from hiper.distributed import Reducer, average_gradients, broadcast_parameters, init_from_environment
from hiper.engines import make_engine, resolve_engine
from hiper.estimators import estimate, needs_critic
from hiper.losses import clipped_value_loss, low_var_kl, masked_mean, ppo_policy_loss
from hiper.masks import SpanMasker
from hiper.micro_batches import forward_all, micro_batches, widen
from hiper.models import quiet_progress_bars
from hiper.policy import response_logprobs
from hiper.profiles import resolve_sizes
from hiper.progress import StepBar, TurnProgress
from hiper.envs.registry import evaluation_specs, game_list, task_mix, training_specs
from hiper.rollout import RolloutEngine
# TrainConfig and its parsing live in hiper.train_config; they are importable from here too, as
# scripts, tests and the docs have always imported them.
from hiper.precision import resolve_bf16
from hiper.train_config import FIELD_TYPES, PRECISIONS, TrainConfig, config_from_dict, parse_value

__all__ = ["FIELD_TYPES", "PRECISIONS", "TrainConfig", "Trainer", "config_from_dict", "parse_value"]

# What an actor update reports (token means); zeros on a step that holds the actor still.
ACTOR_STATS = ("pg_loss", "entropy", "kl", "clip_frac")


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
        wants_critic = needs_critic(cfg.estimator)  # critic-free estimators (GRPO, RLOO, GiGPO) build none
        self.lora = cfg.lora_rank > 0
        # What a LoRA checkpoint records of the base its adapters train on (hiper.lora_base).
        self.lora_base = (lora_base.describe_base(model, tiny_model=cfg.tiny_model, seed=cfg.seed)
                          if self.lora else None)
        if self.lora:
            # The actor trains adapters on frozen base weights; a critic of its own (not shared)
            # gets a second adapter set on the same base weights.
            model = models.add_lora(model, models.lora_config(cfg.lora_rank, cfg.lora_alpha, cfg.lora_dropout,
                                                              cfg.lora_targets),
                                    critic_adapter=wants_critic and not cfg.shared_critic)
        self.actor = model.to(self.device).eval()
        self.tokenizer = models.prepare_tokenizer(tokenizer)
        # The reference policy is the initial model: a frozen copy, or with LoRA the actor itself
        # with its adapters off (see `_reference_policy`).
        self.reference = (copy.deepcopy(self.actor).eval().requires_grad_(False)
                          if cfg.kl_coef > 0 and not self.lora else None)
        self.critic = None
        if wants_critic:
            critic_adapter = models.CRITIC_ADAPTER if self.lora and not cfg.shared_critic else None
            self.critic = Critic.from_actor(self.actor, shared=cfg.shared_critic, adapter=critic_adapter,
                                            value_scale=cfg.value_scale, value_norm=cfg.value_norm
                                            ).to(self.device).eval()
        if self.lora:
            self.actor_parameters = models.adapter_parameters(self.actor)
        else:
            frozen = self.actor.get_input_embeddings().weight if cfg.freeze_embeddings else None
            if frozen is not None:
                frozen.requires_grad_(False)  # no gradient computed for it either
            self.actor_parameters = [p for p in self.actor.parameters() if p is not frozen]
        if cfg.gradient_checkpointing:
            # Recompute activations in the backward pass: a 135M model on 1.3k-token rows
            # otherwise holds gigabytes of activations per micro-batch.
            self.actor.activation_checkpointing_enable()
            if (self.critic is not None and self.critic.owns_backbone
                    and hasattr(self.critic.backbone, "activation_checkpointing_enable")):
                self.critic.backbone.activation_checkpointing_enable()
            # Checkpointed layers keep no KV cache, and the training forwards need none: asking for
            # none spares a warning per update. `generate` reads use_cache from the generation
            # config, so rollouts keep their cache.
            for module in (self.actor, self.critic.backbone if self.critic is not None else None):
                if getattr(module, "config", None) is not None:
                    module.config.use_cache = False
        self.actor_opt = torch.optim.AdamW(self.actor_parameters, lr=cfg.actor_lr, weight_decay=cfg.weight_decay)
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
        self.bf16, self.precision_reason = resolve_bf16(cfg.precision, self.device)
        self.autocast = torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16)
        # What train() shows while a step runs (nothing when train_step is called on its own).
        self._step_bar: StepBar | None = None
        self._rollout_bar = False
        self._on_rollout_turn: Callable[[TurnProgress], None] | None = None
        self.engine = None  # the rollout engine, built by the first rollout (_rollout_engine)

    def _engine_name(self) -> str:
        """hf or vllm: the engine the rollouts use (or will, before the first one builds it)."""
        if self.engine is not None:
            return self.engine.name
        return resolve_engine(self.config.engine, lora=self.lora)

    def _rollout_engine(self):
        """The engine that samples the rollouts (hiper.engines), built on the first one from the
        weights as they are then (after any resume); vLLM keeps its own copy of the weights,
        synced after every actor update."""
        if self.engine is None:
            cfg = self.config
            name = self._engine_name()
            options = {"dtype": torch.bfloat16} if name == "vllm" and self.bf16 else {}
            self.engine = make_engine(name, self.actor, self.tokenizer,
                                      max_model_len=cfg.max_prompt_length + cfg.max_new_tokens, **options)
        return self.engine

    @contextmanager
    def _reference_policy(self):
        """The model the KL term compares with: the frozen copy, or with LoRA the actor with its adapters off."""
        if self.reference is not None:
            yield self.reference
        else:
            with self.actor.disable_adapter():
                yield self.actor

    # ------------------------------------------------------------------ micro-batched forwards
    def _micro_batches(self, batch, rows: torch.Tensor, R: int):
        """The forward passes over `rows` (hiper.micro_batches), cut as the config says now."""
        return micro_batches(batch, rows, R, rows_per_pass=self.config.micro_batch_size,
                             token_budget=self.config.micro_batch_tokens)

    def _forward_all(self, batch, fn, R: int):
        """fn(input_ids, attention_mask, r) -> (n, r, ...) over every row, as (N, R, ...) float32 in row order."""
        return forward_all(self._micro_batches(batch, torch.arange(batch.num_rows), R), fn, batch.num_rows, R,
                           device=self.device, autocast=self.autocast)

    def critic_values(self, batch, R: int) -> torch.Tensor:
        """(N, R, 3) the critic's low / high / term values of every row, in the returns' units."""
        return self._forward_all(batch, self.critic.values, R)

    def _logprobs_and_values(self, ids: torch.Tensor, am: torch.Tensor, r: int, temperature: float,
                             with_hidden: bool = False) -> torch.Tensor:
        """(n, r, 1 + heads [+ hidden]): the actor's log-probs, the shared critic's values (in the
        returns' units) and, with_hidden, the hidden states its heads read, from one forward."""
        logp, hidden = response_logprobs(self.actor, ids, am, r, temperature=temperature, with_hidden=True)
        values = self.critic.norm.to_returns(self.critic.heads(hidden))
        return torch.cat([logp.unsqueeze(-1), values] + ([hidden.float()] if with_hidden else []), dim=-1)

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
                                    on_turn=self._on_rollout_turn, engine=self._rollout_engine()).run()
        batch = rollout.batch
        timings["rollout"] = time.perf_counter() - t - rollout.timings["pack"]
        timings["pack"] = rollout.timings["pack"]
        timings["generate"] = rollout.timings["generate"]
        R = batch.responses.shape[1]

        t = time.perf_counter()
        spans = self.masker(batch.responses, batch.response_mask, include_tags=True)
        timings["masks"] = time.perf_counter() - t

        values = hidden = None
        # Scored at the rollout's sampling temperature: the policy that produced the responses.
        T = cfg.temperature
        if self.critic is not None and self.critic.shared:
            # Heads on the actor's backbone: values and old log-probs from one forward, with the hidden states
            # the critic update fits the heads on (hiper.critic_features); copied out, so `scored` goes with those.
            self._phase("values and log-probs")
            t = time.perf_counter()
            keep = critic_features.fits(batch.num_rows, R, self.actor.config.hidden_size)
            scored = self._forward_all(batch, lambda ids, am, r: self._logprobs_and_values(ids, am, r, T, keep), R)
            heads = self.critic.num_heads
            old_logp, values = scored[..., 0].clone(), scored[..., 1:1 + heads].clone()
            hidden = scored[..., 1 + heads:] if keep else None
            del scored
            timings["values"] = 0.0
        else:
            if self.critic is not None:
                self._phase("values")
                t = time.perf_counter()
                values = self.critic_values(batch, R)
                timings["values"] = time.perf_counter() - t
            self._phase("log-probs")
            t = time.perf_counter()
            old_logp = self._forward_all(batch, lambda ids, am, r: response_logprobs(self.actor, ids, am, r,
                                                                                      temperature=T), R)
        ref_logp = None
        if cfg.kl_coef > 0:  # no reference pass without a KL term
            with self._reference_policy() as reference:
                ref_logp = self._forward_all(batch, lambda ids, am, r: response_logprobs(reference, ids, am, r,
                                                                                          temperature=T), R)
        timings["logprobs"] = time.perf_counter() - t

        t = time.perf_counter()
        advantages, loss_mask, critic_targets = self.advantages(rollout, spans, values)
        features = None if hidden is None else critic_features.TargetFeatures.at_targets(hidden, critic_targets)
        hidden = None  # only the targets' positions are kept (the scoring pass's output is freed)
        timings["advantages"] = time.perf_counter() - t

        # Train mode only around the updates: activation checkpointing applies in train mode,
        # and generation must stay in eval mode (checkpointing disables the KV cache).
        critic_stats = {"critic_loss": 0.0}
        if self.critic is not None:
            # Read before the critic trains on this rollout: how well it predicts returns it has not seen.
            critic_stats["explained_variance"] = explained_variance(values, critic_targets)
            self._phase("critic update")
            t = time.perf_counter()
            self.critic.train()
            critic_stats.update(self._update_critic(batch, values, critic_targets, R, features))
            self.critic.eval()
            timings["critic_update"] = time.perf_counter() - t
        actor_stats = dict.fromkeys(ACTOR_STATS, 0.0)
        timings["actor_update"] = 0.0
        actor_updated = self.critic is None or (self.step >= cfg.critic_warmup and critic_ready(
            critic_stats["explained_variance"], cfg.min_explained_variance))
        if actor_updated:
            self._phase("actor update")
            t = time.perf_counter()
            self.actor.train()
            actor_stats = self._update_actor(batch, old_logp, ref_logp, advantages, loss_mask, R)
            self.actor.eval()
            self.engine.sync_weights(self.actor)  # the next rollout samples from the updated policy
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
            "forward_tokens": int(batch.input_ids.numel()),  # what each forward pass reads: rows x padded width
            "task_types": task_mix(cfg.env, step_specs),  # environments of the step (all ranks) per task type
            "loss_tokens": int(loss_mask.sum()),
            "actor_updated": actor_updated,
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

    def _critic_passes(self, batch, rows, R: int, features):
        """(batch rows, their (n, R, heads) head outputs) of a mini-batch: from the hidden states
        kept from the scoring pass in one piece, or by the backbone in micro-batches."""
        if features is not None:
            if len(rows):  # an empty mini-batch (a rank short of rows) has no pass, as below
                yield rows, features.head_outputs(self.critic.heads, rows, R, self.device).float().cpu()
            return
        for idx, ids, am, r in self._micro_batches(batch, rows, R):
            with self.autocast:
                v = self.critic.head_outputs(ids.to(self.device), am.to(self.device), r)
            yield idx, widen(v.float().cpu(), R)

    def _update_critic(self, batch, old_values, targets, R, features=None) -> dict:
        """Clipped value regression of every head on its own target positions. Each head's loss
        is a token mean over its targets in the whole mini-batch (micro-batches pass that count),
        so gradient accumulation weighs targets, not micro-batches. critic_loss is logged as the
        same coef-weighted sum of per-head token means, over every epoch's targets."""
        cfg = self.config
        if not targets:
            return {"critic_loss": 0.0}
        norm = self.critic.norm
        # The clip bounds how far the heads move in this update: its centre is the heads' outputs
        # before it, in the units they had then. A value normalisation whose statistics move now
        # shifts every value at once, without a gradient; in the new units the old values would
        # sit far from the heads and the clip would stop all learning but towards the shift.
        old_heads = torch.stack([norm.to_heads(old_values[..., h], h) for h in range(old_values.shape[-1])], -1)
        norm.observe(targets, self.reducer)
        loss_sums = torch.zeros(len(targets), dtype=torch.float64)  # per head: the sum of its targets' losses
        target_counts = torch.zeros(len(targets), dtype=torch.float64)
        for _ in range(cfg.critic_epochs or cfg.ppo_epochs):
            for rows in self._minibatches(batch.num_rows):
                self.critic_opt.zero_grad(set_to_none=True)
                counts = [float(mask[rows].sum()) for _, _, mask, _ in targets]
                norms = self._token_normalisers(counts)
                # A rank may get an empty mini-batch: no passes, an all-reduce of zero gradients.
                for idx, v in self._critic_passes(batch, rows, R, features):
                    loss = 0.0
                    for k, (h, ret, mask, coef) in enumerate(targets):
                        # In the heads' own units (hiper.value_norm), the clip too.
                        head_loss = clipped_value_loss(v[..., h], old_heads[idx][..., h],
                                                       norm.to_heads(ret[idx], h), mask[idx], cfg.cliprange_value,
                                                       token_count=norms[k])
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
        sums = dict.fromkeys(ACTOR_STATS, 0.0)  # token sums
        tokens = 0.0
        for _ in range(cfg.ppo_epochs):
            for rows in self._minibatches(batch.num_rows):
                self.actor_opt.zero_grad(set_to_none=True)
                count = float(loss_mask[rows].sum())
                (norm,) = self._token_normalisers([count])
                # A rank may get an empty mini-batch: no passes, an all-reduce of zero gradients.
                for idx, ids, am, r in self._micro_batches(batch, rows, R):
                    mask = loss_mask[idx]
                    with self.autocast:
                        logp, entropy = response_logprobs(self.actor, ids.to(self.device), am.to(self.device), r,
                                                          with_entropy=True, temperature=cfg.temperature,
                                                          entropy_grad=cfg.entropy_coeff != 0)
                    logp, entropy = widen(logp.float().cpu(), R), widen(entropy.float().cpu(), R)
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
                average_gradients(self.actor_parameters, self.reducer)
                torch.nn.utils.clip_grad_norm_(self.actor_parameters, cfg.grad_clip)
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
            critic_state = self.critic.checkpoint_state()
        optimizers = {"actor": self.actor_opt.state_dict(),
                      "critic": self.critic_opt.state_dict() if self.critic_opt is not None else None}
        state = checkpoint.TrainingState(step=self.step, world_size=self.reducer.world_size,
                                         config=dataclasses.asdict(self.config), optimizers=optimizers,
                                         rng=rng_states, base=self.lora_base)
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
        if ckpt.is_lora != self.lora:
            holds, trains = ("LoRA adapters", "full fine-tuning") if ckpt.is_lora else ("a full model", "LoRA")
            raise ValueError(f"lora_rank: {ckpt.path} holds {holds}, but this run trains with {trains}; resume "
                             "with the lora_rank that wrote it")
        if self.lora:
            from hiper.models import load_adapter_state

            lora_base.check_base(state.base, self.lora_base, argument="checkpoint")
            load_adapter_state(self.actor, ckpt.adapter_state())
        else:
            actor, _ = ckpt.load_actor(with_tokenizer=False)
            self.actor.load_state_dict(actor.state_dict())
        if self.critic is not None:
            self.critic.load_checkpoint_state(critic_state)
        self.actor_opt.load_state_dict(state.optimizers["actor"])
        if self.critic_opt is not None:
            self.critic_opt.load_state_dict(state.optimizers["critic"])
        checkpoint.restore_rng_state(state.rng[self.reducer.rank], self.device)
        self.step = state.step
        if self.engine is not None:
            self.engine.sync_weights(self.actor)
        return ckpt

    # ------------------------------------------------------------------ the loop
    def train(self, resume: bool = False, log=print) -> list[dict]:
        """Trains to config.steps. A new run refuses a run_dir holding a run unless
        config.overwrite; `resume` continues from run_dir's checkpoint, first cutting the
        metrics (file and TensorBoard) back to the checkpoint's step."""
        cfg = self.config
        main = self.reducer.rank == 0  # only rank 0 writes files and logs
        warned_invalid = False
        if resume:
            if cfg.overwrite:
                raise ValueError("overwrite: a resumed run continues its run_dir; pass --resume or --overwrite, "
                                 "not both")
            self.load_checkpoint()
            if main:
                runs.truncate_metrics(self.run_dir, self.step)
        else:
            runs.claim_run_dir(self.run_dir, self.reducer, self.config.overwrite)
        if not main:
            log = None
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if main:
            (self.run_dir / "config.json").write_text(json.dumps(dataclasses.asdict(cfg), indent=2))
        bars = log is not None and cfg.progress
        if bars and log is print:
            log = run_log.print_above_bars
        if log is not None:
            for line in self.banner(resume):
                log(line)
        history = []
        # On resume, TensorBoard hides the events logged after the checkpoint (they are logged again).
        writer = run_log.tensorboard(self.run_dir, purge_step=self.step + 1 if resume else None) if main else None
        self._step_bar = StepBar(cfg.steps, self.step) if bars else None
        self._rollout_bar = bars
        self._on_rollout_turn = run_log.first_turn_estimate(self, log) if log is not None else None
        try:
            while self.step < cfg.steps:
                metrics = self.train_step()
                if self.reducer.distributed:
                    # Batch-level numbers over every rank's environments (rows: summed).
                    metrics.update(self.reducer.mean({k: metrics[k] for k in _RANK_AVERAGED}))
                    metrics["rows"] = int(round(self.reducer.mean({"rows": metrics["rows"]})["rows"]
                                                * self.reducer.world_size))
                if main and cfg.eval_every and self.step % cfg.eval_every == 0:
                    from hiper.evaluate import evaluate

                    self._phase("evaluation")
                    # Sampled by the rollouts' engine (vLLM's copy of the weights is synced after
                    # every update), with their prompt limit, which a vLLM engine is sized for.
                    metrics["eval"] = evaluate(self.actor, self.tokenizer, cfg.env, cfg.eval_envs,
                                               cfg.eval_split or None, cfg.max_turns, cfg.max_new_tokens,
                                               data=cfg.data or None, tasks=cfg.task_list(),
                                               params=cfg.game_params or None, progress=bars,
                                               engine=self._rollout_engine(),
                                               max_prompt_length=cfg.max_prompt_length)
                if main:
                    runs.append_metrics(self.run_dir, metrics)
                history.append(metrics)
                if writer is not None:
                    for key, value in run_log.scalars(metrics):
                        writer.add_scalar(key, value, self.step)
                    writer.flush()
                saved = None
                if cfg.save_every and self.step % cfg.save_every == 0:
                    self._phase("saving the checkpoint")
                    with quiet_progress_bars():
                        saved = self.save_checkpoint()
                if self._step_bar is not None:
                    self._step_bar.step_done(metrics["success_rate"], metrics["timings"]["total"])
                if log is not None:
                    tm = metrics["timings"]
                    log(f"step {metrics['step']}/{cfg.steps}: success {metrics['success_rate']:.2f} "
                        f"return {metrics['episode_return']:.2f} invalid {metrics['invalid_rate']:.2f} "
                        f"critic {metrics['critic_loss']:.4f} pg {metrics['pg_loss']:.4f} | "
                        + " ".join(f"{k} {v:.2f}s" for k, v in tm.items())
                        + f" | masks+HAE+pack {100 * metrics['compiled_fraction']:.3f}% of the step"
                        + (f" | ckpt {checkpoint.format_size(saved.size_bytes)}" if saved is not None else ""))
                    if metrics["invalid_rate"] == 1.0 and not warned_invalid:
                        # A policy that writes no valid turn gets no reward to learn from: say so once.
                        warned_invalid = True
                        log(run_log.no_valid_turn_hint(cfg.env))
        finally:
            if self._step_bar is not None:
                self._step_bar.close()
            self._step_bar, self._rollout_bar, self._on_rollout_turn = None, False, None
        if writer is not None:
            writer.close()
        return history

    def banner(self, resume: bool = False) -> list[str]:
        """What train() prints before the first step (hiper.run_log.banner)."""
        return run_log.banner(self, resume)


# Per-rank metrics averaged over ranks for the log (each rank has as many environments).
_RANK_AVERAGED = ("success_rate", "episode_return", "turns", "switches_per_episode", "switch_rate", "invalid_rate",
                  "critic_loss", "pg_loss", "entropy", "kl", "clip_frac")
