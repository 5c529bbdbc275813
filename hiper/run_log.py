"""What a training run tells its user: the banner before the first step, the time estimate after
the first rollout turn, log lines written above the progress bars, and the metrics as
TensorBoard scalars. The Trainer calls these; none of them changes what is trained.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from hiper import models, runs
from hiper.progress import StepEstimate, TurnProgress, update_passes

__all__ = ["ENGINE_NAMES", "banner", "first_turn_estimate", "print_above_bars", "scalars", "tensorboard"]

# How the banner names the rollout engines of hiper.engines.
ENGINE_NAMES = {"hf": "hf generate", "vllm": "vLLM"}


def banner(trainer, resume: bool = False) -> list[str]:
    """What train() prints before the first step: the model and where it runs, the sizes and
    the profile they came from, the games, the run directory."""
    cfg = trainer.config
    parameters = sum(p.numel() for p in trainer.actor.parameters())
    name = getattr(trainer.actor.config, "_name_or_path", "") or type(trainer.actor).__name__
    if cfg.tiny_model:
        name = "a tiny random Llama"
    elif cfg.model is None and Path(name) == models.cache_dir() / models.DEFAULT_MODEL:
        name = f"SmolLM2-135M-Instruct (the offline default, {name})"
    precision = str(next(trainer.actor.parameters()).dtype).removeprefix("torch.") + " weights"
    precision += (", bf16 autocast" if trainer.bf16 else ", fp32 compute") + f" ({trainer.precision_reason})"
    if trainer.lora:
        trained = sum(p.numel() for p in trainer.actor_parameters)
        precision += f", LoRA rank {cfg.lora_rank} ({trained / 1e6:.2f}M trained)"
    ranks = f" per rank x {trainer.reducer.world_size} ranks" if trainer.reducer.world_size > 1 else ""
    start = f" (resuming after step {trainer.step})" if resume else ""
    games = f"{trainer.split_games:,} games"
    if cfg.tasks:
        games += f" of tasks {cfg.tasks}"
    if cfg.env == "alfworld":
        from hiper.envs.alfworld import resolve_data

        games += ", hiper's packaged sample" if cfg.data == "sample" else f", data {resolve_data(cfg.data or None)}"
    return [f"model: {name} ({parameters / 1e6:.1f}M parameters) on {trainer.device}, {precision}; "
            f"generation: {ENGINE_NAMES.get(trainer._engine_name(), trainer._engine_name())}",
            trainer.sizes.describe(cfg),
            f"run: {cfg.steps} step(s){start} of {cfg.envs} environments{ranks} x {cfg.max_turns} turns x "
            f"{cfg.max_new_tokens} new tokens, micro-batches of {cfg.micro_batch_size} rows, "
            f"estimator {cfg.estimator}",
            f"games: {cfg.env} split {cfg.split} ({games})",
            f"run directory: {trainer.run_dir}"]


def first_turn_estimate(trainer, log) -> Callable[[TurnProgress], None]:
    """A rollout hook that logs, once, after this run's first rollout turn, upper bounds on
    the time of a step and of the steps left (hiper.progress.StepEstimate)."""
    cfg = trainer.config
    steps_left = cfg.steps - trainer.step
    passes = update_passes(critic=trainer.critic is not None, shared_critic=cfg.shared_critic,
                           reference=cfg.kl_coef > 0,
                           gradient_checkpointing=cfg.gradient_checkpointing, ppo_epochs=cfg.ppo_epochs,
                           critic_epochs=cfg.critic_epochs)
    parameters = sum(p.numel() for p in trainer.actor.parameters())

    def on_turn(turn: TurnProgress) -> None:
        if turn.turn != 1 or trainer._on_rollout_turn is not on_turn:
            return
        trainer._on_rollout_turn = None  # the next steps' rollouts report nothing
        estimate = StepEstimate.from_first_turn(turn, parameters=parameters, max_new_tokens=cfg.max_new_tokens,
                                                max_prompt_length=cfg.max_prompt_length, passes=passes)
        log(f"first rollout turn: {turn.rows} prompts of <= {turn.prompt_width} tokens read in "
            f"{turn.prefill_seconds:.1f} s, {turn.new_tokens} new tokens in {turn.generate_seconds:.1f} s "
            f"({turn.tokens_per_second:.0f} tokens/s)")
        log(estimate.describe(steps_left))

    return on_turn


def scalars(metrics: dict, prefix: str = ""):
    """Flattened numeric metrics, e.g. ("timings/generate", 3.2), for TensorBoard."""
    for key, value in metrics.items():
        if isinstance(value, dict):
            yield from scalars(value, f"{prefix}{key}/")
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            yield prefix + key, float(value)


def tensorboard(directory: Path, purge_step: int | None = None):
    """A TensorBoard writer in run_dir/tensorboard, when tensorboard is installed; events from
    purge_step on, written before, are hidden (those of steps after a resumed checkpoint)."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(log_dir=str(directory / runs.TENSORBOARD), purge_step=purge_step)


def print_above_bars(message: str) -> None:
    """print(), for log lines while progress bars are on screen: above the bars, not through them."""
    from tqdm.auto import tqdm

    tqdm.write(message)


def no_valid_turn_hint(env: str) -> str:
    """What the log says once when every turn of a step broke the Plan-Execute format."""
    return (f"note: no turn of this step was a valid <switch>/<subgoal>/<action> reply, so the policy earns "
            f"nothing to learn from; teach it the format first with a supervised warm start, e.g. "
            f"`hiper sft --env {env} --out runs/{env}-sft`, then `hiper train --model runs/{env}-sft ...`")
