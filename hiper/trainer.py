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
import math
import os
import random
import time
import typing
from collections.abc import Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from hiper import checkpoint, models, runs
from hiper.config import KEEP_PENALTY_MODES, HAEConfig
from hiper.critic import Critic
from hiper.distributed import Reducer, average_gradients, broadcast_parameters, init_from_environment
from hiper.engines import ENGINES, make_engine, resolve_engine
from hiper.estimators import ESTIMATORS, FLAT_REWARDS, GIGPO_MODES, FlatConfig, estimate, needs_critic
from hiper.losses import clipped_value_loss, low_var_kl, masked_mean, ppo_policy_loss
from hiper.masks import SpanMasker
from hiper.models import DEFAULT_LORA_TARGETS, quiet_progress_bars
from hiper.policy import response_logprobs
from hiper.profiles import CPU, GPU, resolve_sizes
from hiper.progress import StepBar, StepEstimate, TurnProgress, update_passes
from hiper.envs.registry import evaluation_specs, family, game_list, task_mix, training_specs
from hiper.rollout import RolloutConfig, RolloutEngine


PRECISIONS = ("auto", "bf16", "fp32")


def _setting(default, help: str, *, choices: tuple[str, ...] | None = None):
    """A TrainConfig field with its description (what `hiper train --help` shows) and, where its
    values are a fixed set, their choices (offered by the flag, checked by the config)."""
    return dataclasses.field(default=default, metadata={"help": help, "choices": choices})


@dataclass
class TrainConfig:
    """Every hyperparameter of the authors' ALFWorld run (docs/semantics.md §9). The sizes left None
    (envs, max_turns, max_new_tokens, micro_batch_size) come from the profile of the device the
    run trains on (hiper.profiles: small on a CPU, the authors' per-GPU scale on a GPU); the
    Trainer fills them before building anything. A new field is a new `hiper train` flag: place it
    in a group of hiper.flags.TRAIN_FLAG_GROUPS (its section of --help)."""

    # what to train on
    env: str = _setting("alfworld", "alfworld, textworld, scienceworld, twx (TextWorld-Express), keychest, or "
                                    "module:attribute naming a "
                                    "hiper.envs.Family of your own")
    model: str | None = _setting(None, "Hugging Face name or path of the policy "
                                       "(default: SmolLM2-135M-Instruct, offline)")
    tiny_model: bool = _setting(False, "a tiny random model with --model's tokenizer, for tests and smoke runs")
    split: str = _setting("train", "split to train on (its games are drawn in a seeded order, reshuffled every epoch)")
    data: str = _setting("", "ALFWorld data root holding json_2.1.1/, or 'sample' for hiper's 12 packaged games "
                             "(default: $ALFWORLD_DATA)")
    tasks: str = _setting("", "comma-separated ALFWorld task types, ScienceWorld tasks or TextWorld-Express games "
                              "(default: every ALFWorld type; ScienceWorld boil; TextWorld-Express cookingworld)")
    game_params: str = _setting("", "parameters of generated games as name=value,... (TextWorld-Express: rooms, "
                                    "ingredients, items, distractors, doors, distance; see hiper.envs.twx)")
    envs: int | None = _setting(None, "environments per step (and rank) "
                                      f"(default: the device profile's, cpu {CPU.envs} / gpu {GPU.envs}; authors: 128)")
    steps: int = _setting(2, "training steps (authors: 150)")
    max_turns: int | None = _setting(None, "turns per episode (default: the device profile's, "
                                           f"cpu {CPU.max_turns} / gpu {GPU.max_turns})")
    max_new_tokens: int | None = _setting(None, "tokens per response (default: the device profile's, "
                                                f"cpu {CPU.max_new_tokens} / gpu {GPU.max_new_tokens})")
    max_prompt_length: int = _setting(2048, "tokens per prompt (a longer prompt is an error)")
    temperature: float = _setting(1.0, "sampling temperature of the rollout; log-probs are scored at it "
                                       "(0: greedy, scored at 1)")
    top_p: float = _setting(1.0, "nucleus sampling of the rollout, in (0, 1]")
    engine: str = _setting("auto", "what samples the rollouts: hf (Hugging Face generate), vllm "
                                   "(scripts/install_vllm.sh), or auto (vllm when installed, else hf; hf with LoRA)",
                           choices=ENGINES)
    history_length: int = _setting(2, "past turns shown in the prompt")
    # advantage estimator: hae, or a flat baseline
    estimator: str = _setting("hae", "advantage estimator: hae, or a flat baseline", choices=ESTIMATORS)
    group_size: int = _setting(1, "rollouts per game in a step, the GRPO / RLOO / GiGPO groups; must divide envs "
                                  "(authors: 8)")
    flat_reward: str = _setting("episode", "what scores a turn for the flat baselines: its episode's total reward, "
                                           "or its own", choices=FLAT_REWARDS)
    gigpo_gamma: float = _setting(0.95, "GiGPO's discount of the step return, in [0, 1]")
    gigpo_step_weight: float = _setting(1.0, "GiGPO's weight of the step-group advantage")
    gigpo_mode: str = _setting("mean_norm", "GiGPO's group normalisation: centre (mean_norm) or z-score "
                                            "(mean_std_norm)", choices=GIGPO_MODES)
    # HAE
    gamma: float = _setting(1.0, "discount, in [0, 1]")
    lam_turn: float = _setting(1.0, "GAE lambda of the turn level (the flat baselines' lambda), in [0, 1]")
    lam_seg: float = _setting(0.95, "GAE lambda of the segment level, in [0, 1]")
    norm_adv: bool = _setting(True, "normalise each advantage over the turns it lands on")
    bootstrap_truncated: bool = _setting(True, "bootstrap episodes cut by the turn cap from their own values")
    keep_penalty: float = _setting(-0.3, "reward added to KEEP turns")
    keep_penalty_mode: str = _setting("normalized", "fixed: keep_penalty on every KEEP turn; normalized: "
                                                    "keep_penalty / T on each of a T-turn trajectory",
                                      choices=KEEP_PENALTY_MODES)
    keep_consistency_penalty: float = _setting(-0.3, "reward added to KEEP turns whose subgoal text changed")
    invalid_action_penalty_coef: float = _setting(0.1, "subtracted from the reward of format-invalid turns")
    # optimisation
    actor_lr: float = _setting(1e-6, "AdamW learning rate of the actor (0 freezes it)")
    critic_lr: float = _setting(1e-5, "AdamW learning rate of the critic (0 freezes it)")
    weight_decay: float = _setting(0.01, "AdamW weight decay")
    freeze_embeddings: bool = _setting(False, "keep the actor's token embeddings (and an output layer tied to them) "
                                              "fixed in full fine-tuning: Adam moves every row of a large "
                                              "vocabulary's table on the tiny gradients of the softmax normaliser")
    grad_clip: float = _setting(1.0, "gradient-norm clip of every optimiser step")
    ppo_epochs: int = _setting(1, "passes over each step's rollout")
    mini_batch_size: int = _setting(256, "rows (turns) per optimiser step")
    micro_batch_size: int | None = _setting(None, "rows per forward pass; gradients accumulate over a mini-batch "
                                                  f"(default: the device profile's, cpu {CPU.micro_batch_size} / "
                                                  f"gpu {GPU.micro_batch_size}; authors: 16 per GPU)")
    gradient_checkpointing: bool = _setting(True, "recompute activations in the backward pass (memory for compute)")
    clip_ratio: float = _setting(0.2, "PPO clip of the probability ratio")
    clip_ratio_c: float = _setting(3.0, "dual clip: the bound (> 1) on the loss of negative-advantage tokens")
    entropy_coeff: float = _setting(0.001, "entropy bonus")
    kl_coef: float = _setting(0.01, "weight of the low-variance KL to the initial model (0 drops the reference model)")
    cliprange_value: float = _setting(0.5, "clip of the value update (in the critic's units: see value_scale)")
    value_scale: float = _setting(1.0, "the critic's heads predict values / value_scale: with the reward of a win "
                                       "(10 in every built-in family) they learn returns of about 1, in a few updates "
                                       "instead of dozens (authors: 1)")
    high_value_coef: float = _setting(1.0, "weight of the high-level (segment) value head's loss")
    term_value_coef: float = _setting(1.0, "weight of the termination value head's loss")
    shared_critic: bool = _setting(False, "value heads on the actor's backbone instead of a copy of it (with LoRA: "
                                          "instead of the critic's own adapters on the actor's base weights)")
    # LoRA (needs PEFT: pip install 'hiper[lora]') and the precision and size of the update passes
    lora_rank: int = _setting(0, "rank of the LoRA adapters the actor trains on frozen base weights (0: full "
                                 "fine-tuning); the reference policy is the base model, adapters off")
    lora_alpha: float = _setting(16.0, "LoRA scaling numerator: the adapters' update is scaled by alpha / rank")
    lora_dropout: float = _setting(0.0, "dropout on the LoRA adapters' input, in [0, 1)")
    lora_targets: str = _setting(DEFAULT_LORA_TARGETS, "comma-separated names of the modules that get adapters "
                                                       "(default: every attention and MLP projection)")
    micro_batch_tokens: int = _setting(0, "token budget of a forward pass: rows sorted by length, each trimmed to "
                                          "its own prompt + response, as many per pass as fit (0: micro_batch_size "
                                          "rows, padded to the batch's width)")
    precision: str = _setting("auto", "autocast of the forward passes: bf16, fp32, or auto (bf16 on a GPU that "
                                      "supports it, else fp32)", choices=PRECISIONS)
    # bookkeeping
    seed: int = _setting(0, "random seed of the model's initialisation, the sampling and the game order")
    run_dir: str = _setting("runs/hiper", "directory of metrics.jsonl, checkpoint/ and the TensorBoard logs")
    overwrite: bool = _setting(False, "start over in a run_dir that holds a run (else refused unless resuming)")
    save_every: int = _setting(1, "steps between checkpoints (0: never)")
    eval_every: int = _setting(0, "steps between evaluations on held-out games (0: never)")
    eval_envs: int = _setting(10, "distinct held-out games per evaluation")
    eval_split: str = _setting("", "split of the evaluations (default: the environment's held-out one: alfworld "
                                   "valid_unseen, textworld valid, scienceworld dev)")
    device: str = _setting("auto", "auto (CUDA when available), cpu, cuda or cuda:N")
    workers: int = _setting(0, "environment worker processes (0: in this process)")
    progress: bool = _setting(True, "progress bars on stderr, per step and per rollout turn")

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
        """Checks every field, naming it in the error: its type (TypeError), its choices and range
        (ValueError), that env names an environment family and group_size divides envs, and, by
        building them, the estimators' own configurations."""
        _check_types(self)
        for f in dataclasses.fields(self):
            choices, value = f.metadata.get("choices"), getattr(self, f.name)
            if choices and value not in choices:
                raise ValueError(f"{f.name}: expected one of {', '.join(choices)}, got {value!r}")
        _check_ranges(self)
        if self.lora_rank > 0:
            resolve_engine(self.engine, lora=True)  # refuses vllm, which serves no LoRA adapters yet
        # A step's environments are envs per rank times the ranks torchrun starts (WORLD_SIZE).
        world = int(os.environ.get("WORLD_SIZE", "1") or 1)
        if self.envs is not None and (self.envs * world) % self.group_size:
            ranks = f" x {world} ranks" if world > 1 else ""
            raise ValueError(f"group_size: must divide the environments of a step ({self.envs}{ranks}), "
                             f"got {self.group_size}")
        family(self.env)  # registered, or module:attribute naming a Family (imported here)
        self.hae_config()  # discount and lambdas in [0, 1], finite penalties
        self.flat_config()

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
        return {"max_turns": self.max_turns, "data": self.data or None, "tasks": self.task_list(),
                "params": self.game_params or None}


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
            self.critic = Critic.from_actor(self.actor, shared=cfg.shared_critic,
                                            adapter=critic_adapter).to(self.device).eval()
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
        self.bf16 = _uses_bf16(cfg.precision, self.device)
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
        """The forward passes over `rows` (indices into the batch): (rows of the pass, input_ids,
        attention_mask, response width r <= R). Without a token budget, micro_batch_size rows
        padded to the batch's width (r = R). With `micro_batch_tokens`, rows sorted by their own
        prompt + response length, as many per pass as fit the budget once padded to the pass's
        longest prompt and response, and trimmed to that: padding only costs compute, so the
        outputs are the same (`_widen` pads them back to R columns)."""
        budget = self.config.micro_batch_tokens
        if budget == 0:
            for idx in rows.split(self.config.micro_batch_size) if len(rows) else ():
                yield idx, batch.input_ids[idx], batch.attention_mask[idx], R
            return
        mask = batch.attention_mask[rows].bool()
        prompt_width = mask.shape[1] - R
        prompts = mask[:, :prompt_width].sum(1)  # left-padded: the last `prompts` columns of the prompt part
        # Right-padded responses: a row's width is one past its last real token (at least one column).
        real = mask[:, prompt_width:]
        responses = torch.where(real.any(1), R - real.flip(1).int().argmax(1), torch.ones_like(prompts))
        order = torch.argsort(prompts + responses, descending=True, stable=True)
        rows, prompts, responses = rows[order], prompts[order], responses[order]
        start = 0
        while start < len(rows):
            # Padded cost of the first n rows from `start`: n x (longest prompt + longest response).
            cost = (torch.arange(1, len(rows) - start + 1) * (prompts[start:].cummax(0).values
                                                              + responses[start:].cummax(0).values))
            n = max(1, int((cost <= budget).sum()))  # cost grows with n; a row over budget passes alone
            idx = rows[start:start + n]
            p, r = int(prompts[start:start + n].max()), int(responses[start:start + n].max())
            columns = slice(prompt_width - p, prompt_width + r)
            yield idx, batch.input_ids[idx, columns], batch.attention_mask[idx, columns], r
            start += n

    @staticmethod
    def _widen(out: torch.Tensor, R: int) -> torch.Tensor:
        """(n, r, ...) response-aligned outputs of a trimmed pass as (n, R, ...): zeros past r,
        where every row's response is padding (masked out of every loss)."""
        if out.shape[1] == R:
            return out
        return torch.nn.functional.pad(out, (0, 0) * (out.dim() - 2) + (0, R - out.shape[1]))

    @torch.no_grad()
    def _forward_all(self, batch, fn, R: int):
        """fn(input_ids, attention_mask, r) -> (n, r, ...) over every row, as (N, R, ...) float32 in row order."""
        outs, order = [], []
        for idx, ids, am, r in self._micro_batches(batch, torch.arange(batch.num_rows), R):
            with self.autocast:
                outs.append(self._widen(fn(ids.to(self.device), am.to(self.device), r).float().cpu(), R))
            order.append(idx)
        out = torch.empty((batch.num_rows,) + outs[0].shape[1:], dtype=outs[0].dtype)
        out[torch.cat(order)] = torch.cat(outs)
        return out

    def critic_values(self, batch, R: int) -> torch.Tensor:
        """(N, R, 3) the critic's low / high / term values of every row, in the returns' units."""
        return self._forward_all(batch, self.critic.values, R) * self.config.value_scale

    def _logprobs_and_values(self, ids: torch.Tensor, am: torch.Tensor, r: int, temperature: float) -> torch.Tensor:
        """(n, r, 1 + heads): the actor's log-probs, then the shared critic's values, from one forward."""
        logp, hidden = response_logprobs(self.actor, ids, am, r, temperature=temperature, with_hidden=True)
        return torch.cat([logp.unsqueeze(-1), self.critic.heads(hidden)], dim=-1)

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

        values = None
        # Scored at the rollout's sampling temperature: the policy that produced the responses.
        T = cfg.temperature
        if self.critic is not None and self.critic.shared:
            # Heads on the actor's backbone: values and old log-probs from the same forward.
            self._phase("values and log-probs")
            t = time.perf_counter()
            both = self._forward_all(batch, lambda ids, am, r: self._logprobs_and_values(ids, am, r, T), R)
            old_logp, values = both[..., 0], both[..., 1:] * cfg.value_scale
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
                # A rank may get an empty mini-batch: no passes, an all-reduce of zero gradients.
                for idx, ids, am, r in self._micro_batches(batch, rows, R):
                    with self.autocast:
                        v = self._widen(self.critic.values(ids.to(self.device), am.to(self.device), r).float().cpu(),
                                        R)
                    loss = 0.0
                    for k, (h, ret, mask, coef) in enumerate(targets):
                        # In the critic's own units (values / value_scale), the clip too.
                        head_loss = clipped_value_loss(v[..., h], old_values[idx][..., h] / cfg.value_scale,
                                                       ret[idx] / cfg.value_scale, mask[idx], cfg.cliprange_value,
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
        sums = dict.fromkeys(("pg_loss", "entropy", "kl", "clip_frac"), 0.0)  # token sums
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
                    logp, entropy = self._widen(logp.float().cpu(), R), self._widen(entropy.float().cpu(), R)
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
        if ckpt.is_lora != self.lora:
            holds, trains = ("LoRA adapters", "full fine-tuning") if ckpt.is_lora else ("a full model", "LoRA")
            raise ValueError(f"lora_rank: {ckpt.path} holds {holds}, but this run trains with {trains}; resume "
                             "with the lora_rank that wrote it")
        if self.lora:
            from hiper.models import load_adapter_state

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
        bars = log is not None and cfg.progress
        if bars and log is print:
            log = _print_above_bars
        if log is not None:
            for line in self.banner(resume):
                log(line)
        history = []
        # On resume, TensorBoard hides the events logged after the checkpoint (they are logged again).
        writer = _tensorboard(self.run_dir, purge_step=self.step + 1 if resume else None) if main else None
        self._step_bar = StepBar(cfg.steps, self.step) if bars else None
        self._rollout_bar = bars
        self._on_rollout_turn = self._estimate_after_first_turn(log) if log is not None else None
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
                    for key, value in _scalars(metrics):
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
        finally:
            if self._step_bar is not None:
                self._step_bar.close()
            self._step_bar, self._rollout_bar, self._on_rollout_turn = None, False, None
        if writer is not None:
            writer.close()
        return history

    def banner(self, resume: bool = False) -> list[str]:
        """What train() prints before the first step: the model and where it runs, the sizes and
        the profile they came from, the games, the run directory."""
        cfg = self.config
        parameters = sum(p.numel() for p in self.actor.parameters())
        name = getattr(self.actor.config, "_name_or_path", "") or type(self.actor).__name__
        if cfg.tiny_model:
            name = "a tiny random Llama"
        elif cfg.model is None and Path(name) == models.cache_dir() / models.DEFAULT_MODEL:
            name = f"SmolLM2-135M-Instruct (the offline default, {name})"
        precision = str(next(self.actor.parameters()).dtype).removeprefix("torch.") + " weights"
        if self.bf16:
            precision += ", bf16 autocast"
        if self.lora:
            trained = sum(p.numel() for p in self.actor_parameters)
            precision += f", LoRA rank {cfg.lora_rank} ({trained / 1e6:.2f}M trained)"
        ranks = f" per rank x {self.reducer.world_size} ranks" if self.reducer.world_size > 1 else ""
        start = f" (resuming after step {self.step})" if resume else ""
        games = f"{self.split_games:,} games"
        if cfg.tasks:
            games += f" of tasks {cfg.tasks}"
        if cfg.env == "alfworld":
            from hiper.envs.alfworld import resolve_data

            games += ", hiper's packaged sample" if cfg.data == "sample" else f", data {resolve_data(cfg.data or None)}"
        return [f"model: {name} ({parameters / 1e6:.1f}M parameters) on {self.device}, {precision}; "
                f"generation: {_ENGINE_NAMES.get(self._engine_name(), self._engine_name())}",
                self.sizes.describe(cfg),
                f"run: {cfg.steps} step(s){start} of {cfg.envs} environments{ranks} x {cfg.max_turns} turns x "
                f"{cfg.max_new_tokens} new tokens, micro-batches of {cfg.micro_batch_size} rows, "
                f"estimator {cfg.estimator}",
                f"games: {cfg.env} split {cfg.split} ({games})",
                f"run directory: {self.run_dir}"]

    def _estimate_after_first_turn(self, log) -> Callable[[TurnProgress], None]:
        """A rollout hook that logs, once, after this run's first rollout turn, upper bounds on
        the time of a step and of the steps left (hiper.progress.StepEstimate)."""
        cfg = self.config
        steps_left = cfg.steps - self.step
        passes = update_passes(critic=self.critic is not None, shared_critic=cfg.shared_critic,
                               reference=cfg.kl_coef > 0,
                               gradient_checkpointing=cfg.gradient_checkpointing, ppo_epochs=cfg.ppo_epochs)
        parameters = sum(p.numel() for p in self.actor.parameters())

        def on_turn(turn: TurnProgress) -> None:
            if turn.turn != 1 or self._on_rollout_turn is not on_turn:
                return
            self._on_rollout_turn = None  # the next steps' rollouts report nothing
            estimate = StepEstimate.from_first_turn(turn, parameters=parameters, max_new_tokens=cfg.max_new_tokens,
                                                    max_prompt_length=cfg.max_prompt_length, passes=passes)
            log(f"first rollout turn: {turn.rows} prompts of <= {turn.prompt_width} tokens read in "
                f"{turn.prefill_seconds:.1f} s, {turn.new_tokens} new tokens in {turn.generate_seconds:.1f} s "
                f"({turn.tokens_per_second:.0f} tokens/s)")
            log(estimate.describe(steps_left))

        return on_turn

    def _claim_run_dir(self) -> None:
        """A new run: refuse a run_dir that holds another run, or clear it with config.overwrite.
        Rank 0 decides for every rank, so none is left waiting for a rank that raised."""
        found = runs.existing_run(self.run_dir) if self.reducer.rank == 0 and not self.config.overwrite else []
        if self.reducer.max(len(found)) > 0:
            raise ValueError(f"run_dir: {self.run_dir} already holds a run ({', '.join(found) or 'see rank 0'}); "
                             "pass --resume to continue it or --overwrite true to start it over")
        if self.reducer.rank == 0 and self.config.overwrite:
            runs.clear_run(self.run_dir)


def _uses_bf16(precision: str, device: torch.device) -> bool:
    """Whether the forward passes run under bf16 autocast (TrainConfig.precision)."""
    if device.type == "cuda":
        supported = torch.cuda.is_bf16_supported()
        if precision == "bf16" and not supported:
            raise ValueError(f"precision: bf16 asked for, but {torch.cuda.get_device_name(device)} does not support it")
        return precision == "bf16" or (precision == "auto" and supported)
    return precision == "bf16"


# How the banner names the rollout engines of hiper.engines.
_ENGINE_NAMES = {"hf": "hf generate", "vllm": "vLLM"}

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


def _print_above_bars(message: str) -> None:
    """print(), for log lines while progress bars are on screen: above the bars, not through them."""
    from tqdm.auto import tqdm

    tqdm.write(message)


# ---------------------------------------------------------------------------------------------
# Checking a configuration, and reading one from a file or a command line
# ---------------------------------------------------------------------------------------------

# The ranges of the numeric fields; a size left None (the device profile's) is checked once filled.
_AT_LEAST_ONE = ("envs", "steps", "max_turns", "max_new_tokens", "max_prompt_length", "group_size", "ppo_epochs",
                 "mini_batch_size", "micro_batch_size", "eval_envs")
_NOT_NEGATIVE = ("history_length", "temperature", "actor_lr", "critic_lr", "weight_decay", "entropy_coeff", "kl_coef",
                 "high_value_coef", "term_value_coef", "save_every", "eval_every", "workers", "lora_rank",
                 "micro_batch_tokens")
_ABOVE_ZERO = ("grad_clip", "clip_ratio", "cliprange_value", "value_scale", "lora_alpha")

_EXPECTED = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
_TRUE, _FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")


def _declared_kinds(cls) -> dict[str, tuple[type, bool]]:
    """Each field's declared type (bool, int, float or str) and whether the annotation allows None."""
    kinds = {}
    for name, hint in typing.get_type_hints(cls).items():
        args = typing.get_args(hint)
        kinds[name] = (next((a for a in args if a is not type(None)), hint), type(None) in args)
    return kinds


# TrainConfig field -> (its type: bool, int, float or str; whether it may be None).
FIELD_TYPES = _declared_kinds(TrainConfig)


def parse_value(kind: type, value: Any, *, text: bool = True):
    """`value` as a `kind` (bool, int, float or str). With `text` (a YAML file, a command line)
    a value may also come as a string: a bool as true/false, yes/no, on/off or 1/0 (also the
    numbers 1 and 0), an int as an integral string, a float as a numeric string ("1e-6", which
    YAML reads as a string). An int is never read from 1.5 or a bool; a float field takes an
    int. TypeError otherwise, saying what was expected (the caller names the field)."""
    is_bool = isinstance(value, (bool, np.bool_))
    if kind is bool:
        if is_bool:
            return bool(value)
        if text and isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
            return value.strip().lower() in _TRUE
        if text and isinstance(value, (int, np.integer)) and value in (0, 1):
            return bool(value)
    elif kind is int:
        if isinstance(value, (int, np.integer)) and not is_bool:
            return int(value)
        if text and isinstance(value, str):
            try:
                return int(value)  # "1.5" and "two" raise
            except ValueError:
                pass
    elif kind is float:
        if isinstance(value, (int, float, np.integer, np.floating)) and not is_bool:
            return float(value)
        if text and isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
    elif kind is str:
        if isinstance(value, str):
            return value
        if isinstance(value, os.PathLike):
            return os.fspath(value)
    raise TypeError(f"expected {_EXPECTED[kind]}, got {value!r}")


def _check_types(config: TrainConfig) -> None:
    """Every field holds its declared type, None only where the field allows it; ints in float
    fields become floats and numpy scalars Python ones (config.json is JSON)."""
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        kind, optional = FIELD_TYPES[f.name]
        if value is None and (optional or f.default is None):
            continue
        try:
            value = parse_value(kind, value, text=False)
        except TypeError as exc:
            raise TypeError(f"{f.name}: {exc}") from None
        if kind is float and not math.isfinite(value):
            raise ValueError(f"{f.name}: expected a finite number, got {value!r}")
        setattr(config, f.name, value)


def _check_ranges(config: TrainConfig) -> None:
    def refuse(name: str, rule: str):
        raise ValueError(f"{name}: must be {rule}, got {getattr(config, name)!r}")

    for names, outside, rule in ((_AT_LEAST_ONE, lambda v: v < 1, ">= 1"), (_NOT_NEGATIVE, lambda v: v < 0, ">= 0"),
                                 (_ABOVE_ZERO, lambda v: v <= 0, "> 0")):
        for name in names:
            if getattr(config, name) is not None and outside(getattr(config, name)):
                refuse(name, rule)
    if config.clip_ratio_c <= 1:
        refuse("clip_ratio_c", "> 1")  # the dual clip bounds the loss at clip_ratio_c x |advantage|
    if not 0 < config.top_p <= 1:
        refuse("top_p", "in (0, 1]")
    if not 0 <= config.lora_dropout < 1:
        refuse("lora_dropout", "in [0, 1)")
    if not any(t.strip() for t in config.lora_targets.split(",")):
        refuse("lora_targets", "comma-separated module names")
    if not 0 <= config.seed < 2**32:
        refuse("seed", "in [0, 2**32)")


def config_from_dict(values: Mapping[str, Any]) -> TrainConfig:
    """A TrainConfig from a mapping of field names to values, as a YAML file gives them: each value
    is read as its field's declared type (`parse_value`: "false" is False, "1e-6" a float, null
    None where the field allows it), then the config checks itself. Unknown keys, and values of
    the wrong type, are refused naming the key (`config key envs: expected an integer, got 'two'`)."""
    if not isinstance(values, Mapping):
        raise TypeError(f"config: expected a mapping of TrainConfig fields, got {type(values).__name__}")
    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(str(key) for key in values if key not in defaults)
    if unknown:
        import difflib

        near = sorted({m for key in unknown for m in difflib.get_close_matches(key, defaults, n=2)})
        raise ValueError(f"config: unknown keys {unknown}" + (f" (did you mean {', '.join(near)}?)" if near else ""))
    parsed = {}
    for name, value in values.items():
        kind, optional = FIELD_TYPES[name]
        if value is None and (optional or defaults[name] is None):
            parsed[name] = None
            continue
        try:
            parsed[name] = parse_value(kind, value)
        except TypeError as exc:
            raise TypeError(f"config key {name}: {exc}") from None
    return TrainConfig(**parsed)
