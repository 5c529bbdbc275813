"""Machine profiles, the start banner, progress bars and time estimates, quiet model loading."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from hiper import models
from hiper.envs import EnvPool
from hiper.profiles import CPU, GPU, play_sizes, profile_for, resolve_sizes
from hiper.progress import StepEstimate, TurnProgress, format_seconds, update_passes
from hiper.rollout import RolloutConfig, RolloutEngine
from hiper.trainer import Trainer, TrainConfig

TESTS = Path(__file__).parent
TOKENIZER = str(TESTS / "fixtures" / "smollm2_tokenizer")
COUNTING = "games_for_tests:COUNTING"  # a family of our own: games that reset in microseconds


def hiper_cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """`python -m hiper ARGS` as a user runs it; the tests' folder importable for COUNTING."""
    # TQDM_MININTERVAL=0: every update of a bar is drawn, not only those 0.1 s apart, so what the
    # bars show does not depend on how fast the machine runs.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")])),
           "OMP_NUM_THREADS": "1", "TQDM_MININTERVAL": "0"}
    return subprocess.run([sys.executable, "-m", "hiper", *args], capture_output=True, text=True, timeout=timeout,
                          env=env)


# ---------------------------------------------------------------------------- machine profiles
def test_a_profile_fills_only_the_sizes_left_unset():
    config = TrainConfig(envs=3)
    resolved, sizes = resolve_sizes(config, torch.device("cpu"))
    assert (resolved.envs, resolved.max_turns, resolved.max_new_tokens, resolved.micro_batch_size) == \
        (3, CPU.max_turns, CPU.max_new_tokens, CPU.micro_batch_size)
    assert config.max_turns is None and config.envs == 3  # the given config is left as it was
    assert sizes.profile is CPU and sizes.filled == ("max_turns", "max_new_tokens", "micro_batch_size")
    assert sizes.describe(resolved) == ("sizes: cpu profile (device cpu): max_turns 4, max_new_tokens 64, "
                                        "micro_batch_size 4; set explicitly: envs 3")


def test_a_cuda_device_gets_the_gpu_profile():
    resolved, sizes = resolve_sizes(TrainConfig(), torch.device("cuda", 1))  # no GPU needed: only its type is read
    assert sizes.profile is GPU and profile_for(torch.device("cuda")) is GPU
    assert (resolved.envs, resolved.max_turns, resolved.max_new_tokens, resolved.micro_batch_size) == (16, 50, 512, 16)
    assert sizes.describe(resolved).startswith("sizes: gpu profile (device cuda:1): envs 16, max_turns 50")
    explicit = TrainConfig(envs=1, max_turns=2, max_new_tokens=3, micro_batch_size=4)
    same, unused = resolve_sizes(explicit, torch.device("cuda"))
    assert same == explicit and unused.filled == ()
    assert unused.describe(same) == ("sizes: gpu profile (device cuda) unused, all set explicitly: envs 1, "
                                     "max_turns 2, max_new_tokens 3, micro_batch_size 4")


def test_profiles_refuse_what_is_not_a_device_or_a_config():
    with pytest.raises(TypeError, match="device: expected a torch.device"):
        profile_for("cpu")
    with pytest.raises(TypeError, match="config: expected a TrainConfig"):
        resolve_sizes({"envs": None}, torch.device("cpu"))


@pytest.fixture
def own_registry(monkeypatch):
    """Families registered by the test (COUNTING, on use) are forgotten after it."""
    from hiper.envs import registry

    monkeypatch.setattr(registry, "FAMILIES", dict(registry.FAMILIES))


def test_the_trainer_builds_and_records_the_resolved_sizes(tmp_path, own_registry):
    trainer = Trainer(TrainConfig(env=COUNTING, tiny_model=True, model=TOKENIZER, steps=1, max_turns=2,
                                  max_new_tokens=4, kl_coef=0.0, save_every=0, run_dir=str(tmp_path / "run")))
    assert (trainer.config.envs, trainer.config.micro_batch_size) == (CPU.envs, CPU.micro_batch_size)
    assert trainer.sizes.filled == ("envs", "micro_batch_size")
    # Checkpointed training forwards ask for no KV cache (transformers would warn on every update).
    assert trainer.actor.config.use_cache is False and trainer.critic.backbone.config.use_cache is False
    (metrics,) = trainer.train(log=None)
    assert metrics["rows"] == CPU.envs * 2  # the tiny model never wins: every environment plays both turns
    width = metrics["forward_tokens"] // metrics["rows"]  # prompts and responses, padded to one width
    assert metrics["forward_tokens"] == metrics["rows"] * width and width > 4
    recorded = json.loads((tmp_path / "run" / "config.json").read_text())
    assert {k: recorded[k] for k in ("envs", "max_turns", "max_new_tokens", "micro_batch_size")} == \
        {"envs": CPU.envs, "max_turns": 2, "max_new_tokens": 4, "micro_batch_size": CPU.micro_batch_size}


# ---------------------------------------------------------------------------- rollout progress
@pytest.fixture(scope="module")
def tiny():
    from transformers import AutoTokenizer

    tokenizer = models.prepare_tokenizer(AutoTokenizer.from_pretrained(TOKENIZER))
    return models.tiny_random_model(tokenizer), tokenizer


def counting_pool(*max_steps: int) -> EnvPool:
    from hiper.envs import EnvSpec

    return EnvPool([EnvSpec("custom", {"factory": "envs_for_tests:CountingEnv", "goal": 99, "max_steps": m})
                    for m in max_steps])


def test_the_rollout_reports_every_turn(tiny, capfd):
    model, tokenizer = tiny
    reports: list[TurnProgress] = []
    with counting_pool(2, 50) as pool:  # the first environment is cut after 2 turns, the second plays 3
        result = RolloutEngine(model, tokenizer, pool, RolloutConfig(max_turns=3, max_new_tokens=6),
                               on_turn=reports.append).run()
    assert [(r.turn, r.max_turns, r.envs, r.rows, r.running) for r in reports] == \
        [(1, 3, 2, 2, 2), (2, 3, 2, 2, 1), (3, 3, 2, 1, 1)]
    batch = result.batch
    for r in reports:
        rows = batch.turn_idx == r.turn - 1
        assert r.new_tokens == int(batch.response_mask[rows].sum()) > 0
        assert 1 <= r.response_length <= 6 and r.prompt_width >= int(batch.prompt_mask[rows].sum(dim=1).max())
        assert 0 < r.prefill_seconds < r.generate_seconds <= r.turn_seconds
        assert r.reset_seconds == reports[0].reset_seconds
    assert "rollout" not in capfd.readouterr().err  # no bar unless asked for: library code stays quiet


def test_the_rollout_bar_goes_to_stderr(tiny, capfd):
    model, tokenizer = tiny
    with counting_pool(50, 50) as pool:
        RolloutEngine(model, tokenizer, pool, RolloutConfig(max_turns=2, max_new_tokens=4), progress=True).run()
    captured = capfd.readouterr()
    assert "rollout:" in captured.err and "running 2/2" in captured.err and captured.out == ""


def test_the_rollout_refuses_a_progress_that_is_not_a_bool_or_callable(tiny):
    model, tokenizer = tiny
    with counting_pool(50) as pool:
        with pytest.raises(TypeError, match="progress: expected True or False"):
            RolloutEngine(model, tokenizer, pool, progress="yes")
        with pytest.raises(TypeError, match="on_turn: expected a callable"):
            RolloutEngine(model, tokenizer, pool, on_turn=3)


# ---------------------------------------------------------------------------- time estimates
def test_the_step_estimate_scales_the_first_turn_to_the_worst_case():
    first = TurnProgress(turn=1, max_turns=10, envs=4, rows=4, running=4, prompt_width=512, response_length=33,
                         new_tokens=100, generate_seconds=2.0, prefill_seconds=0.4, turn_seconds=3.0,
                         reset_seconds=5.0)
    estimate = StepEstimate.from_first_turn(first, parameters=10**8, max_new_tokens=64, max_prompt_length=2048,
                                            passes=11)
    # A turn: 1 s outside generate, the prefill at 2048 / 512 prompt tokens, 64 decoding steps of
    # (2.0 - 0.4) / 32 s; ten such turns after 5 s of resets.
    assert estimate.rollout_seconds == pytest.approx(5.0 + 10 * (1.0 + 0.4 * 4 + 64 * 0.05))
    # The prefill ran 2 x 1e8 FLOP per token over 4 prompts of 512 tokens in 0.4 s.
    assert estimate.flop_rate == pytest.approx(2e8 * 4 * 512 / 0.4)
    # The updates: 11 passes over 4 envs x 10 turns rows of 2048 + 64 tokens, at that rate.
    assert estimate.update_seconds == pytest.approx(11 * 2e8 * 40 * 2112 / estimate.flop_rate)
    assert estimate.step_seconds == pytest.approx(estimate.rollout_seconds + estimate.update_seconds)
    text = estimate.describe(steps_left=3)
    assert text.startswith("estimate (an upper bound") and "a step <= 4.1 min" in text
    assert "the run's 3 step(s) <= 12.2 min" in text and "the prefill's 1024 GFLOP/s" in text
    with pytest.raises(ValueError, match="turn: expected the rollout's first turn"):
        StepEstimate.from_first_turn(TurnProgress(**{**first.__dict__, "turn": 2}), parameters=1, max_new_tokens=1,
                                     max_prompt_length=1, passes=1)


def test_update_passes_and_durations():
    assert update_passes(critic=True, shared_critic=False, reference=True, gradient_checkpointing=True,
                         ppo_epochs=1) == 11  # values, old and reference log-probs, 2 x (fwd + bwd + recompute)
    assert update_passes(critic=True, shared_critic=True, reference=True, gradient_checkpointing=True,
                         ppo_epochs=1) == 7   # a shared critic: values from the log-probs' forward, heads-only update
    assert update_passes(critic=False, shared_critic=False, reference=False, gradient_checkpointing=False,
                         ppo_epochs=2) == 7   # GRPO-style: old log-probs, 2 epochs of actor fwd + bwd
    assert update_passes(critic=True, shared_critic=False, reference=True, gradient_checkpointing=True,
                         ppo_epochs=1, critic_epochs=3) == 19  # 3 critic passes of 4 instead of 1
    assert [format_seconds(s) for s in (12, 150, 7200)] == ["12 s", "2.5 min", "2.0 h"]


# ---------------------------------------------------------------------------- quiet loading
def test_loading_shows_no_transformers_bars_and_restores_their_setting(tiny, tmp_path, capfd):
    from transformers.utils import logging as hf_logging

    model, tokenizer = tiny
    model.save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    capfd.readouterr()
    assert hf_logging.is_progress_bar_enabled()
    loaded, _ = models.load(tmp_path / "model", local_files_only=True)
    assert "Loading weights" not in capfd.readouterr().err
    assert hf_logging.is_progress_bar_enabled()  # switched off inside the load only
    assert loaded.config.vocab_size == model.config.vocab_size


def test_the_first_conversion_says_what_it_does_once(tmp_path, monkeypatch, capfd):
    monkeypatch.setenv("HIPER_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(models, "_gguf_source", lambda: tmp_path / "gguf")
    converted = []

    def fake_convert(source, target):  # the real one reads a 100 MB GGUF for ~20 s
        converted.append(source)
        target.mkdir(parents=True)
        (target / "config.json").write_text("{}")

    monkeypatch.setattr(models, "_convert_gguf", fake_convert)
    target = models.default_model_dir()
    err = capfd.readouterr().err
    assert target == tmp_path / "cache" / models.DEFAULT_MODEL and converted == [tmp_path / "gguf"]
    assert f"converting SmolLM2-135M-Instruct from {tmp_path / 'gguf'}" in err and str(target) in err
    assert models.default_model_dir() == target and capfd.readouterr().err == ""  # said once, not on every load
    assert converted == [tmp_path / "gguf"]


# ---------------------------------------------------------------------------- the command line
def test_hiper_train_prints_the_banner_the_estimate_and_its_bars(tmp_path):
    run = tmp_path / "run"
    done = hiper_cli("train", "--env", COUNTING, "--tiny-model", "true", "--model", TOKENIZER, "--steps", "1",
                     "--max-new-tokens", "8", "--kl-coef", "0", "--run-dir", str(run))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[1].startswith("model: a tiny random Llama (") and lines[1].endswith(
        "M parameters) on cpu, float32 weights, fp32 compute (auto: no native bf16 matmul on this CPU); "
        "generation: hf generate")
    assert lines[2] == ("sizes: cpu profile (device cpu): envs 2, max_turns 4, micro_batch_size 4; "
                        "set explicitly: max_new_tokens 8")
    assert lines[3] == ("run: 1 step(s) of 2 environments x 4 turns x 8 new tokens, micro-batches of 4 rows, "
                        "estimator hae")
    assert lines[4] == f"games: {COUNTING} split train (4 games)" and lines[5] == f"run directory: {run}"
    assert lines[6].startswith("first rollout turn: 2 prompts of <= ")
    assert lines[7].startswith("estimate (an upper bound") and lines[8].startswith("step 1/1: ")
    # The bars (training and the rollout inside it) on stderr; no transformers bars or cache warnings.
    assert "training:" in done.stderr and "rollout:" in done.stderr and "running 2/2" in done.stderr
    for noise in ("Loading weights", "Writing model shards", "use_cache=True", "Caching is incompatible"):
        assert noise not in done.stderr + done.stdout, noise
    recorded = json.loads((run / "config.json").read_text())
    assert (recorded["envs"], recorded["max_turns"], recorded["micro_batch_size"]) == (2, 4, 4)

    evaluated = hiper_cli("eval", "--checkpoint", str(run), "--env", COUNTING, "--episodes", "2", "--max-turns", "2",
                          "--max-new-tokens", "4")
    assert evaluated.returncode == 0, evaluated.stderr
    assert json.loads(evaluated.stdout)["episodes"] == 2  # stdout stays the JSON report
    assert "evaluating" in evaluated.stderr and "rollout:" in evaluated.stderr
    assert "Loading weights" not in evaluated.stderr


def test_hiper_rollout_says_what_it_plays_and_can_hide_its_bar():
    args = ("rollout", "--env", COUNTING, "--tiny", "--model", TOKENIZER, "--envs", "2", "--max-new-tokens", "4")
    shown = hiper_cli(*args, "--max-turns", "2")
    assert shown.returncode == 0, shown.stderr
    assert f"playing 2 {COUNTING} game(s) on cpu: up to 2 turns x 4 new tokens each (set explicitly)" in shown.stdout
    assert "rollout:" in shown.stderr and "running 2/2" in shown.stderr
    assert "1/2 [" in shown.stderr and "2/2 [" in shown.stderr and " new tok/s]" in shown.stderr  # every turn
    # Without --max-turns the cpu profile's play size applies, and the banner says so.
    hidden = hiper_cli(*args, "--progress", "false")
    assert hidden.returncode == 0, hidden.stderr
    assert (f"up to {CPU.play_max_turns} turns x 4 new tokens each (max_turns from the cpu profile)"
            in hidden.stdout)
    assert "rollout:" not in hidden.stderr and "success rate:" in hidden.stdout


def test_commands_that_only_play_take_the_profiles_play_sizes():
    assert play_sizes(None, None, torch.device("cpu")) == (CPU.play_max_turns, CPU.play_max_new_tokens,
                                                           "max_turns, max_new_tokens from the cpu profile")
    assert play_sizes(None, 7, torch.device("cuda")) == (GPU.play_max_turns, 7, "max_turns from the gpu profile")
    assert play_sizes(3, 7, torch.device("cuda")) == (3, 7, "set explicitly")
    # An evaluation must leave room for the turns a task takes: ALFWorld's expert needs up to ~20.
    assert CPU.play_max_turns >= 20 and GPU.play_max_turns == 50
