"""`hiper train`'s settings: TrainConfig, every field a flag and a --config key, and how a
configuration is checked and read from a mapping (a YAML file, a command line, a run's saved
config.json).

Beside hiper.config rather than in it: hiper.config holds HAEConfig, which `import hiper` loads
and the veRL integration uses on its own; TrainConfig names the engines, estimators, device
profiles and environment families, and would make every HAE user import all of them.
"""
from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from hiper.config import KEEP_PENALTY_MODES, HAEConfig
from hiper.engines import ENGINES, resolve_engine
from hiper.estimators import ESTIMATORS, FLAT_REWARDS, GIGPO_MODES, FlatConfig
from hiper.models import DEFAULT_LORA_TARGETS
from hiper.profiles import CPU, GPU
from hiper.envs.registry import family
from hiper.rollout import RolloutConfig
from hiper.settings import check_types, declared_kinds, parse_value, setting

__all__ = ["FIELD_TYPES", "PRECISIONS", "TrainConfig", "config_from_dict", "parse_value"]

PRECISIONS = ("auto", "bf16", "fp32")

@dataclass
class TrainConfig:
    """Every hyperparameter of the authors' ALFWorld run (docs/semantics.md §9). The sizes left None
    (envs, max_turns, max_new_tokens, micro_batch_size) come from the profile of the device the
    run trains on (hiper.profiles: small on a CPU, the authors' per-GPU scale on a GPU); the
    Trainer fills them before building anything. A new field is a new `hiper train` flag: place it
    in a group of hiper.flags.TRAIN_FLAG_GROUPS (its section of --help)."""

    # what to train on
    env: str = setting("alfworld", "alfworld, textworld, scienceworld, twx (TextWorld-Express), keychest, or "
                                   "module:attribute naming a "
                                   "hiper.envs.Family of your own")
    model: str | None = setting(None, "Hugging Face name or path of the policy "
                                      "(default: SmolLM2-135M-Instruct, offline)")
    tiny_model: bool = setting(False, "a tiny random model with --model's tokenizer, for tests and smoke runs")
    split: str = setting("train", "split to train on (its games are drawn in a seeded order, reshuffled every epoch)")
    data: str = setting("", "ALFWorld data root holding json_2.1.1/, or 'sample' for hiper's 12 packaged games "
                            "(default: $ALFWORLD_DATA)")
    tasks: str = setting("", "comma-separated ALFWorld task types, ScienceWorld tasks or TextWorld-Express games "
                             "(default: every ALFWorld type; ScienceWorld boil; TextWorld-Express cookingworld)")
    game_params: str = setting("", "parameters of generated games as name=value,... (TextWorld-Express: rooms, "
                                   "ingredients, items, distractors, doors, distance; see hiper.envs.twx; "
                                   "keychest: doors, key_reward)")
    envs: int | None = setting(None, "environments per step (and rank) "
                                     f"(default: the device profile's, cpu {CPU.envs} / gpu {GPU.envs}; authors: 128)")
    steps: int = setting(2, "training steps (authors: 150)")
    max_turns: int | None = setting(None, "turns per episode (default: the device profile's, "
                                          f"cpu {CPU.max_turns} / gpu {GPU.max_turns})")
    max_new_tokens: int | None = setting(None, "tokens per response (default: the device profile's, "
                                               f"cpu {CPU.max_new_tokens} / gpu {GPU.max_new_tokens})")
    max_prompt_length: int = setting(2048, "tokens per prompt (a longer prompt is an error)")
    temperature: float = setting(1.0, "sampling temperature of the rollout; log-probs are scored at it "
                                      "(0: greedy, scored at 1)")
    top_p: float = setting(1.0, "nucleus sampling of the rollout, in (0, 1]")
    engine: str = setting("auto", "what samples the rollouts: hf (Hugging Face generate), vllm "
                                  "(scripts/install_vllm.sh), or auto (vllm when installed, else hf; hf with LoRA)",
                          choices=ENGINES)
    history_length: int = setting(2, "past turns shown in the prompt")
    # advantage estimator: hae, or a flat baseline
    estimator: str = setting("hae", "advantage estimator: hae, or a flat baseline", choices=ESTIMATORS)
    group_size: int = setting(1, "rollouts per game in a step, the GRPO / RLOO / GiGPO groups; must divide envs "
                                 "(authors: 8)")
    flat_reward: str = setting("episode", "what scores a turn for the flat baselines: its episode's total reward, "
                                          "or its own", choices=FLAT_REWARDS)
    gigpo_gamma: float = setting(0.95, "GiGPO's discount of the step return, in [0, 1]")
    gigpo_step_weight: float = setting(1.0, "GiGPO's weight of the step-group advantage")
    gigpo_mode: str = setting("mean_norm", "GiGPO's group normalisation: centre (mean_norm) or z-score "
                                           "(mean_std_norm)", choices=GIGPO_MODES)
    # HAE
    gamma: float = setting(1.0, "discount, in [0, 1]")
    lam_turn: float = setting(1.0, "GAE lambda of the turn level (the flat baselines' lambda), in [0, 1]")
    lam_seg: float = setting(0.95, "GAE lambda of the segment level, in [0, 1]")
    norm_adv: bool = setting(True, "normalise each advantage over the turns it lands on (the authors' setting; "
                                   "with small batches that mostly win, false kept the keychest policy where "
                                   "true lost it: docs/learning/stability.md)")
    bootstrap_truncated: bool = setting(True, "bootstrap episodes cut by the turn cap from their own values")
    keep_penalty: float = setting(-0.3, "reward added to KEEP turns")
    keep_penalty_mode: str = setting("normalized", "fixed: keep_penalty on every KEEP turn; normalized: "
                                                   "keep_penalty / T on each of a T-turn trajectory",
                                     choices=KEEP_PENALTY_MODES)
    keep_consistency_penalty: float = setting(-0.3, "reward added to KEEP turns whose subgoal text changed")
    invalid_action_penalty_coef: float = setting(0.1, "subtracted from the reward of format-invalid turns")
    # optimisation
    actor_lr: float = setting(1e-6, "AdamW learning rate of the actor (0 freezes it)")
    critic_lr: float = setting(1e-5, "AdamW learning rate of the critic (0 freezes it)")
    weight_decay: float = setting(0.01, "AdamW weight decay")
    freeze_embeddings: bool = setting(False, "keep the actor's token embeddings (and an output layer tied to them) "
                                             "fixed in full fine-tuning: Adam moves every row of a large "
                                             "vocabulary's table on the tiny gradients of the softmax normaliser")
    grad_clip: float = setting(1.0, "gradient-norm clip of every optimiser step")
    ppo_epochs: int = setting(1, "passes over each step's rollout")
    critic_epochs: int | None = setting(None, "the critic's passes over each step's rollout (default: ppo_epochs); "
                                              "more let it tell states apart before the actor reads it")
    mini_batch_size: int = setting(256, "rows (turns) per optimiser step")
    micro_batch_size: int | None = setting(None, "rows per forward pass; gradients accumulate over a mini-batch "
                                                 f"(default: the device profile's, cpu {CPU.micro_batch_size} / "
                                                 f"gpu {GPU.micro_batch_size}; authors: 16 per GPU)")
    gradient_checkpointing: bool = setting(True, "recompute activations in the backward pass (memory for compute)")
    clip_ratio: float = setting(0.2, "PPO clip of the probability ratio")
    clip_ratio_c: float = setting(3.0, "dual clip: the bound (> 1) on the loss of negative-advantage tokens")
    entropy_coeff: float = setting(0.001, "entropy bonus")
    kl_coef: float = setting(0.01, "weight of the low-variance KL to the initial model (0 drops the reference model)")
    cliprange_value: float = setting(0.5, "clip of the value update (in the critic's units: see value_scale)")
    value_scale: float = setting(1.0, "the critic's heads predict values / value_scale: with the reward of a win "
                                      "(10 in every built-in family) they learn returns of about 1, in a few updates "
                                      "instead of dozens, though on keychest the faster critic made HAE less stable "
                                      "(docs/learning/stability.md) (authors: 1)")
    value_norm: bool = setting(False, "each value head predicts its targets standardised by their running mean and "
                                      "spread (hiper.value_norm): the heads read the returns' mean from the first "
                                      "update on, instead of climbing to it from zero (authors: off)")
    critic_warmup: int = setting(0, "first training steps that update the critic only, the actor held still "
                                    "until the critic has seen some returns (verl's critic_warmup)")
    min_explained_variance: float = setting(0.0, "the actor trains on a step only if every value head explains at "
                                                  "least this share of its targets' variance on the step's fresh "
                                                  "rollout, read before the critic trains on it (0: always)")
    high_value_coef: float = setting(1.0, "weight of the high-level (segment) value head's loss")
    term_value_coef: float = setting(1.0, "weight of the termination value head's loss")
    shared_critic: bool = setting(False, "value heads on the actor's backbone instead of a copy of it (with LoRA: "
                                         "instead of the critic's own adapters on the actor's base weights)")
    # LoRA (needs PEFT: pip install 'hiper[lora]') and the precision and size of the update passes
    lora_rank: int = setting(0, "rank of the LoRA adapters the actor trains on frozen base weights (0: full "
                                "fine-tuning); the reference policy is the base model, adapters off")
    lora_alpha: float = setting(16.0, "LoRA scaling numerator: the adapters' update is scaled by alpha / rank")
    lora_dropout: float = setting(0.0, "dropout on the LoRA adapters' input, in [0, 1)")
    lora_targets: str = setting(DEFAULT_LORA_TARGETS, "comma-separated names of the modules that get adapters "
                                                      "(default: every attention and MLP projection)")
    micro_batch_tokens: int = setting(0, "token budget of a forward pass: rows sorted by length, each trimmed to "
                                         "its own prompt + response, as many per pass as fit (0: micro_batch_size "
                                         "rows, padded to the batch's width)")
    precision: str = setting("auto", "autocast of the forward passes: bf16, fp32, or auto (bf16 where the "
                                     "hardware multiplies bf16 natively: a GPU that supports it, a CPU with "
                                     "AVX512-BF16, AMX or Arm BF16; else fp32)", choices=PRECISIONS)
    # bookkeeping
    seed: int = setting(0, "random seed of the model's initialisation, the sampling and the game order")
    run_dir: str = setting("runs/hiper", "directory of metrics.jsonl, checkpoint/ and the TensorBoard logs")
    overwrite: bool = setting(False, "start over in a run_dir that holds a run (else refused unless resuming)")
    save_every: int = setting(1, "steps between checkpoints (0: never)")
    eval_every: int = setting(0, "steps between evaluations on held-out games (0: never)")
    eval_envs: int = setting(10, "distinct held-out games per evaluation")
    eval_split: str = setting("", "split of the evaluations (default: the environment's held-out one: alfworld "
                                  "valid_unseen, textworld valid, scienceworld dev)")
    device: str = setting("auto", "auto (CUDA when available), cpu, cuda or cuda:N")
    workers: int = setting(0, "environment worker processes (0: in this process)")
    progress: bool = setting(True, "progress bars on stderr, per step and per rollout turn")

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
        check_types(self, FIELD_TYPES)
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


# ---------------------------------------------------------------------------------------------
# Checking a configuration, and reading one from a mapping
# ---------------------------------------------------------------------------------------------

# The ranges of the numeric fields; a size left None (the device profile's) is checked once filled.
_AT_LEAST_ONE = ("envs", "steps", "max_turns", "max_new_tokens", "max_prompt_length", "group_size", "ppo_epochs",
                 "critic_epochs", "mini_batch_size", "micro_batch_size", "eval_envs")
_NOT_NEGATIVE = ("history_length", "temperature", "actor_lr", "critic_lr", "weight_decay", "entropy_coeff", "kl_coef",
                 "high_value_coef", "term_value_coef", "critic_warmup", "save_every", "eval_every", "workers",
                 "lora_rank", "micro_batch_tokens")
_ABOVE_ZERO = ("grad_clip", "clip_ratio", "cliprange_value", "value_scale", "lora_alpha")


# TrainConfig field -> (its type: bool, int, float or str; whether it may be None).
FIELD_TYPES = declared_kinds(TrainConfig)


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
    if not 0 <= config.min_explained_variance <= 1:
        refuse("min_explained_variance", "in [0, 1]")
    if not 0 <= config.lora_dropout < 1:
        refuse("lora_dropout", "in [0, 1)")
    if not any(t.strip() for t in config.lora_targets.split(",")):
        refuse("lora_targets", "comma-separated module names")
    if not 0 <= config.seed < 2**32:
        refuse("seed", "in [0, 2**32)")
    if config.value_norm and config.value_scale != 1.0:
        raise ValueError(f"value_scale: value_norm learns the heads' scale; leave value_scale at 1 "
                         f"(got {config.value_scale!r})")


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
