"""The command line: its embedded defaults run end to end; bad input fails early, on one line
that names the flag (or the config key, or the file); flags, help and example configs agree."""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import yaml

from hiper import cli
from hiper.cli import build_parser, main
from hiper.trainer import TrainConfig, config_from_dict

from cli_runs import hiper, run

REPO = Path(__file__).resolve().parent.parent
CONFIGS = REPO / "configs"


def test_info(capsys):
    assert main(["info"]) == 0
    assert "CUDA backend compiled" in capsys.readouterr().out


def test_hae_on_embedded_batch(capsys):
    assert main(["hae", "--trajectories", "6", "--max-turns", "7", "--length", "64", "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    assert "token masks identical: True" in out
    assert "segments:" in out


# ---------------------------------------------------------------------------- helpers


# ---------------------------------------------------------------------------- one line, naming the flag
@pytest.mark.parametrize("argv, code, line", [
    (["train", "--env", "foo"], 1,
     "hiper: error: --env: expected one of alfworld, textworld, scienceworld, twx, keychest or module:attribute naming a Family; "
     "got 'foo'"),
    (["train", "--keep-penalty-mode", "bogus"], 2,
     "hiper: error: --keep-penalty-mode: invalid choice: 'bogus' (choose from 'fixed', 'normalized') "
     "(see hiper train --help)"),
    (["train", "--envs", "0"], 1, "hiper: error: --envs: must be >= 1, got 0"),
])
def test_a_bad_flag_is_one_line_naming_it_before_anything_else(argv, code, line, tmp_path):
    proc = hiper(*argv, "--run-dir", str(tmp_path / "run"), cwd=tmp_path)
    assert proc.returncode == code
    assert proc.stdout == ""  # no banner, no "training 1 step(s) on foo": the error comes first
    assert proc.stderr.splitlines() == [line]
    assert not (tmp_path / "run").exists()


def test_cuda_asked_for_without_cuda_is_one_line(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    proc = hiper("train", "--device", "cuda", "--data", "sample", cwd=tmp_path)
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.splitlines() == [
        "hiper: error: --device: cuda asked for, but this machine has no usable CUDA device (use cpu or auto)"]


def test_debug_shows_the_traceback(tmp_path):
    proc = hiper("train", "--envs", "0", "--debug", cwd=tmp_path)
    assert proc.returncode == 1
    assert proc.stderr.startswith("Traceback") and proc.stderr.splitlines()[-1] == (
        "ValueError: envs: must be >= 1, got 0")


@pytest.mark.parametrize("argv, code, line", [
    (["train", "--envs", "-2"], 1, "--envs: must be >= 1, got -2"),
    (["train", "--steps", "0"], 1, "--steps: must be >= 1, got 0"),
    (["train", "--steps", "-1"], 1, "--steps: must be >= 1, got -1"),
    (["train", "--envs", "two"], 2, "--envs: expected an integer, got 'two' (see hiper train --help)"),
    (["train", "--steps", "1.5"], 2, "--steps: expected an integer, got '1.5' (see hiper train --help)"),
    (["train", "--norm-adv", "maybe"], 2, "--norm-adv: expected true or false, got 'maybe' (see hiper train --help)"),
    (["train", "--estimator", "ppo"], 2, "--estimator: invalid choice: 'ppo' (choose from 'hae', 'gae', 'turn_gae', "
                                         "'grpo', 'rloo', 'gigpo') (see hiper train --help)"),
    (["train", "--gigpo-mode", "x"], 2, "--gigpo-mode: invalid choice: 'x' (choose from 'mean_norm', 'mean_std_norm') "
                                        "(see hiper train --help)"),
    (["train", "--flat-reward", "x"], 2, "--flat-reward: invalid choice: 'x' (choose from 'episode', 'turn') "
                                         "(see hiper train --help)"),
    (["train", "--group-size", "3", "--envs", "4"], 1, "--group-size: must divide the environments of a step (4), got 3"),
    (["train", "--actor-lr=-1e-6"], 1, "--actor-lr: must be >= 0, got -1e-06"),
    (["train", "--critic-lr", "-1"], 1, "--critic-lr: must be >= 0, got -1.0"),
    (["train", "--clip-ratio", "0"], 1, "--clip-ratio: must be > 0, got 0.0"),
    (["train", "--clip-ratio-c", "1"], 1, "--clip-ratio-c: must be > 1, got 1.0"),
    (["train", "--cliprange-value", "0"], 1, "--cliprange-value: must be > 0, got 0.0"),
    (["train", "--grad-clip", "0"], 1, "--grad-clip: must be > 0, got 0.0"),
    (["train", "--micro-batch-size", "0"], 1, "--micro-batch-size: must be >= 1, got 0"),
    (["train", "--mini-batch-size", "0"], 1, "--mini-batch-size: must be >= 1, got 0"),
    (["train", "--ppo-epochs", "0"], 1, "--ppo-epochs: must be >= 1, got 0"),
    (["train", "--max-turns", "0"], 1, "--max-turns: must be >= 1, got 0"),
    (["train", "--max-new-tokens", "0"], 1, "--max-new-tokens: must be >= 1, got 0"),
    (["train", "--temperature", "-0.5"], 1, "--temperature: must be >= 0, got -0.5"),
    (["train", "--top-p", "0"], 1, "--top-p: must be in (0, 1], got 0.0"),
    (["train", "--top-p", "1.5"], 1, "--top-p: must be in (0, 1], got 1.5"),
    (["train", "--eval-envs", "0"], 1, "--eval-envs: must be >= 1, got 0"),
    (["train", "--workers", "-1"], 1, "--workers: must be >= 0, got -1"),
    (["train", "--seed", "-1"], 1, "--seed: must be in [0, 2**32), got -1"),
    (["train", "--gamma", "1.5"], 1, "--gamma: expected a number in [0, 1], got 1.5"),
    (["train", "--gigpo-gamma", "2"], 1, "--gigpo-gamma: expected a number in [0, 1], got 2.0"),
    (["train", "--lam-seg", "nan"], 1, "--lam-seg: expected a finite number, got nan"),
    (["train", "--device", "tpu"], 1, "--device: expected auto, cpu, cuda or cuda:N, got 'tpu'"),
    (["train", "--data", "sample", "--eval-every", "1", "--eval-envs", "99"], 1,
     "--eval-envs: the valid_unseen split of alfworld holds 6 distinct games, asked for 99"),
    (["train", "--env", "textworld", "--split", "valid_unseen"], 1,
     "--split: textworld has the splits train, valid, test; got 'valid_unseen'"),
    (["rollout", "--envs", "0"], 2, "--envs: must be >= 1, got 0 (see hiper rollout --help)"),
    (["rollout", "--env", "foo"], 2, "--env: expected one of alfworld, textworld, scienceworld, twx, keychest or module:attribute "
                                     "naming a Family; got 'foo' (see hiper rollout --help)"),
    (["eval", "--checkpoint", "run", "--device", "tpu"], 2,
     "--device: expected auto, cpu, cuda or cuda:N, got 'tpu' (see hiper eval --help)"),
    (["rollout", "--top-p", "0"], 2, "--top-p: must be in (0, 1], got 0.0 (see hiper rollout --help)"),
    (["rollout", "--tiny", "maybe"], 2, "--tiny: expected true or false, got 'maybe' (see hiper rollout --help)"),
    (["eval", "--checkpoint", "run", "--episodes", "0"], 2, "--episodes: must be >= 1, got 0 (see hiper eval --help)"),
    (["eval", "--checkpoint", "missing"], 1, "--checkpoint: missing does not exist"),
    (["hae", "--trajectories", "0"], 2, "--trajectories: must be >= 1, got 0 (see hiper hae --help)"),
])
def test_every_bad_value_is_refused_on_one_line_naming_its_flag(argv, code, line, tmp_path, monkeypatch, capsys,
                                                                no_model):
    monkeypatch.chdir(tmp_path)
    assert run(argv, capsys) == (code, "", f"hiper: error: {line}\n")


def test_a_mistyped_command_is_one_line(capsys):
    code, out, err = run(["trian"], capsys)
    assert (code, out) == (2, "") and err.count("\n") == 1
    assert err.startswith("hiper: error: command: invalid choice: 'trian' (choose from 'info', 'hae', 'rollout', ")
    assert err.endswith(") (see hiper --help)\n")


def test_errors_name_the_flag_of_the_argument_they_name(monkeypatch, capsys):
    from hiper.checkpoint import CheckpointError
    from hiper.envs.pool import EnvWorkerError

    def failing(exc):
        def command(args):
            raise exc
        return command

    for exc, line in [(ValueError("tiny_model: no tokenizer"), "--tiny-model: no tokenizer"),
                      (TypeError("max_new_tokens: expected an integer"), "--max-new-tokens: expected an integer"),
                      (ValueError("turns: not a flag of rollout"), "turns: not a flag of rollout"),
                      (CheckpointError("checkpoint: bad"), "checkpoint: bad"),
                      (FileNotFoundError("data: no such directory"), "--data: no such directory"),
                      (EnvWorkerError("environment 3 crashed\nits worker said: ..."),
                       "environment 3 crashed (--debug shows the rest)")]:
        monkeypatch.setattr(cli, "cmd_rollout", failing(exc))
        assert run(["rollout"], capsys) == (1, "", f"hiper: error: {line}\n")


def test_interrupt_and_unexpected_errors(monkeypatch, capsys):
    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.delenv("HIPER_DEBUG", raising=False)
    monkeypatch.setattr(cli, "cmd_info", interrupted)
    assert run(["info"], capsys) == (130, "", "hiper: interrupted\n")
    with pytest.raises(KeyboardInterrupt):
        main(["info", "--debug"])

    for bug in (RuntimeError("a bug"), TypeError("f() missing 1 required positional argument: 'x'")):
        def broken(args):
            raise bug

        monkeypatch.setattr(cli, "cmd_info", broken)
        with pytest.raises(type(bug)):  # not the user's to fix: the traceback stays
            main(["info"])

    def refused(args):
        raise ValueError("envs: bad")

    monkeypatch.setattr(cli, "cmd_info", refused)
    with pytest.raises(ValueError, match="envs: bad"):
        main(["--debug", "info"])
    monkeypatch.setenv("HIPER_DEBUG", "1")
    with pytest.raises(ValueError, match="envs: bad"):
        main(["info"])


# ---------------------------------------------------------------------------- the run directory, before loading
def test_the_run_directory_is_checked_before_any_model_loads(tmp_path, monkeypatch, capsys, no_model):
    import hiper.checkpoint

    base = ["train", "--data", "sample", "--run-dir", str(tmp_path / "run")]
    code, _, err = run([*base, "--resume"], capsys)
    assert code == 1 and err == f"hiper: error: --run-dir: {tmp_path / 'run'} does not exist\n"
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "metrics.jsonl").write_text("")
    code, _, err = run(base, capsys)
    assert code == 1 and err.startswith(f"hiper: error: --run-dir: {tmp_path / 'run'} already holds a run "
                                        "(metrics.jsonl); pass --resume")
    code, _, err = run([*base, "--resume", "--overwrite"], capsys)
    assert code == 1 and err.startswith("hiper: error: --overwrite: a resumed run continues its run_dir")
    code, _, err = run([*base, "--resume"], capsys)
    assert code == 1 and err.startswith(f"hiper: error: --run-dir: no checkpoint in {tmp_path / 'run'}")
    # A checkpoint at step 3: --steps 3 (or fewer) has nothing to do; --steps 4 goes on.
    saved = SimpleNamespace(step=3, recorded_config=lambda: {"data": "sample", "run_dir": str(tmp_path / "run")})
    monkeypatch.setattr(hiper.checkpoint, "open_checkpoint", lambda path, argument: saved)
    for steps in ("3", "2"):
        code, _, err = run([*base, "--resume", "--steps", steps], capsys)
        assert code == 1 and err == (f"hiper: error: --steps: nothing to do: the checkpoint in {tmp_path / 'run'} "
                                     "is at step 3 already; pass --steps above 3 to train on\n")
    assert run([*base, "--resume", "--steps", "4", "--check"], capsys)[0] == 0


def test_rollout_and_eval_check_their_games_before_any_model_loads(tmp_path, monkeypatch, capsys, no_model):
    import hiper.checkpoint

    monkeypatch.setattr(hiper.checkpoint, "load_policy", lambda *args, **kwargs: pytest.fail("a model was loaded"))
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text('{"model_type": "llama"}')
    # The packaged sample holds 6 valid_unseen games: 10 distinct ones cannot be played.
    code, out, err = run(["rollout", "--data", "sample", "--split", "valid_unseen", "--envs", "10"], capsys)
    assert code == 1 and out == "" and err == ("hiper: error: --envs: the valid_unseen split of alfworld holds 6 "
                                               "distinct games, asked for 10\n")
    code, out, err = run(["eval", "--checkpoint", str(tmp_path / "model"), "--data", "sample", "--episodes", "10"],
                         capsys)
    assert code == 1 and out == "" and err == ("hiper: error: --episodes: the valid_unseen split of alfworld holds "
                                               "6 distinct games, asked for 10\n")
    # ALFWORLD_DATA set by the user to a directory without the games: refused, not replaced by the sample.
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv("ALFWORLD_DATA", str(tmp_path / "empty"))
    for argv in (["rollout"], ["eval", "--checkpoint", str(tmp_path / "model")]):
        code, out, err = run(argv, capsys)
        assert code == 1 and out == "" and err.startswith(f"hiper: error: ALFWORLD_DATA: {tmp_path / 'empty'} holds "
                                                          "no json_2.1.1"), err
        assert err.count("\n") == 1


def test_a_mistyped_model_path_is_refused_before_any_model_loads(tmp_path, monkeypatch, capsys, no_model):
    from hiper.models import check_model_name

    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs" / "sft").mkdir(parents=True)
    (tmp_path / "runs" / "sft" / "config.json").write_text("{}")
    (tmp_path / "tokenizer").mkdir()
    for name in (None, "runs/sft", "HuggingFaceTB/SmolLM2-135M-Instruct", "gpt2"):
        check_model_name(name)  # a model directory, the offline default or a Hub name
    check_model_name("tokenizer", tokenizer_only=True)
    for name in ("runs/sfft", "./runs/sft-x", "/nowhere/model", "a/b/c"):
        with pytest.raises(FileNotFoundError, match=f"^model: {name} does not exist$"):
            check_model_name(name)
    with pytest.raises(ValueError, match="model: tokenizer holds no config.json"):
        check_model_name("tokenizer")
    for argv in (["train", "--data", "sample", "--run-dir", str(tmp_path / "run")], ["rollout", "--data", "sample"],
                 ["sft", "--env", "keychest", "--out", str(tmp_path / "out")]):
        code, out, err = run([*argv, "--model", "runs/sfft"], capsys)
        assert code == 1 and err == "hiper: error: --model: runs/sfft does not exist\n", (argv, err)


def test_a_reader_that_stops_early_is_not_an_error(tmp_path):
    """`hiper train --check | head -1`: stdout closed under the command ends it quietly."""
    import subprocess
    import sys

    command = [sys.executable, "-m", "hiper", "train", "--env", "keychest", "--tiny-model", "--check",
               "--run-dir", str(tmp_path / "run")]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    process.stdout.close()  # before the command writes: its first write meets a closed pipe
    err = process.stderr.read()
    assert process.wait(timeout=120) == 141 and err == "", err


def test_export_to_a_file_is_one_line_naming_out(tmp_path, capsys):
    (tmp_path / "file").write_text("")
    code, _, err = run(["export", "--checkpoint", str(tmp_path), "--out", str(tmp_path / "file")], capsys)
    assert code == 1 and err == f"hiper: error: --out: {tmp_path / 'file'} is a file; give a directory (new or empty)\n"


# ---------------------------------------------------------------------------- YAML configs
def write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


def test_config_values_are_read_as_their_fields_type():
    config = config_from_dict({"norm_adv": "false", "steps": "3", "actor_lr": "1e-6", "tiny_model": "yes",
                               "shared_critic": 1, "gamma": 1, "model": None, "envs": None, "run_dir": "r"})
    assert config.norm_adv is False and config.tiny_model is True and config.shared_critic is True
    assert config.steps == 3 and type(config.steps) is int
    assert config.actor_lr == 1e-6 and type(config.gamma) is float and config.gamma == 1.0
    assert config.model is None and config.envs is None
    for key, value, expected in [("envs", "two", "an integer"), ("steps", 1.5, "an integer"),
                                 ("steps", True, "an integer"), ("norm_adv", "maybe", "true or false"),
                                 ("norm_adv", 2, "true or false"), ("actor_lr", "fast", "a number"),
                                 ("actor_lr", False, "a number"), ("split", 3, "a string"),
                                 ("ppo_epochs", None, "an integer")]:
        with pytest.raises(TypeError, match=f"^config key {key}: expected {expected}, got {value!r}$"):
            config_from_dict({key: value})
    with pytest.raises(ValueError, match=r"^config: unknown keys \['actor_lrate'\] \(did you mean actor_lr\?\)$"):
        config_from_dict({"actor_lrate": 1e-6})
    with pytest.raises(TypeError, match="^config: expected a mapping of TrainConfig fields, got list$"):
        config_from_dict([("envs", 2)])


def test_the_config_checks_its_own_types():
    """Built in Python the config takes no strings for numbers, but numpy scalars and ints for floats."""
    with pytest.raises(TypeError, match="^norm_adv: expected true or false, got 'false'$"):
        TrainConfig(norm_adv="false")
    with pytest.raises(TypeError, match="^envs: expected an integer, got 'two'$"):
        TrainConfig(envs="two")
    with pytest.raises(ValueError, match="^keep_penalty_mode: expected one of fixed, normalized, got 'bogus'$"):
        TrainConfig(keep_penalty_mode="bogus")
    config = TrainConfig(envs=np.int64(2), actor_lr=1, norm_adv=np.bool_(False), run_dir=Path("runs/x"))
    assert (type(config.envs), type(config.actor_lr), config.norm_adv, config.run_dir) == (int, float, False, "runs/x")


def test_the_flat_baselines_config_checks_its_fields():
    """TrainConfig builds it: a bad GiGPO discount fails with the config, not at the first rollout."""
    from hiper.estimators import FlatConfig

    for values, message in [({"reward": "total"}, "^reward: expected one of episode, turn, got 'total'$"),
                            ({"gigpo_mode": "z"}, "^gigpo_mode: expected one of mean_norm, mean_std_norm, got 'z'$"),
                            ({"gigpo_gamma": 1.5}, r"^gigpo_gamma: expected a number in \[0, 1\], got 1.5$"),
                            ({"lam": -0.1}, r"^lam: expected a number in \[0, 1\], got -0.1$"),
                            ({"group_eps": float("inf")}, "^group_eps: expected a finite number, got inf$")]:
        with pytest.raises(ValueError, match=message):
            FlatConfig(**values)
    assert FlatConfig(reward="turn", gigpo_mode="mean_std_norm").gigpo_mode == "mean_std_norm"


def test_a_config_file_is_read_checked_and_named(tmp_path, capsys, no_model):
    def train(*flags):
        return run(["train", "--data", "sample", "--run-dir", str(tmp_path / "run"), *flags], capsys)

    code, _, err = train("--config", write(tmp_path / "two.yaml", "envs: two\n"))
    assert (code, err) == (1, "hiper: error: config key envs: expected an integer, got 'two'\n")
    code, _, err = train("--config", write(tmp_path / "zero.yaml", "envs: 0\n"))
    assert (code, err) == (1, "hiper: error: config key envs: must be >= 1, got 0\n")
    assert train("--config", str(tmp_path / "zero.yaml"), "--envs", "2", "--check")[0] == 0  # the flag wins
    code, _, err = train("--config", write(tmp_path / "list.yaml", "- envs\n- 2\n"))
    assert (code, err) == (1, f"hiper: error: --config: {tmp_path / 'list.yaml'} must hold a mapping of TrainConfig "
                              "keys (envs: 4, ...), not a list\n")
    code, _, err = train("--config", write(tmp_path / "broken.yaml", "envs: [2\n"))
    assert code == 1 and err.startswith(f"hiper: error: --config: {tmp_path / 'broken.yaml'} is not valid YAML (")
    assert err.count("\n") == 1
    code, _, err = train("--config", str(tmp_path / "missing.yaml"))
    assert (code, err) == (1, f"hiper: error: --config: cannot read {tmp_path / 'missing.yaml'} "
                              "(No such file or directory)\n")
    code, _, err = train("--config", write(tmp_path / "typo.yaml", "stepz: 2\n"))
    assert (code, err) == (1, "hiper: error: --config: unknown keys ['stepz'] (did you mean steps?)\n")
    # What YAML gives as strings is read as the fields' types, and --check prints the result.
    code, out, _ = train("--config", write(tmp_path / "strings.yaml", 'norm_adv: "false"\nsteps: "1"\n'
                                           "actor_lr: 1e-6\nenvs: 2\n"), "--check")
    assert code == 0
    printed = yaml.safe_load(out)
    assert (printed["norm_adv"], printed["steps"], printed["actor_lr"], printed["envs"]) == (False, 1, 1e-6, 2)


# ---------------------------------------------------------------------------- shipped configs
def test_the_shipped_configs_load_and_validate():
    smoke = config_from_dict(yaml.safe_load((CONFIGS / "cpu-smoke.yaml").read_text()))
    assert (smoke.data, smoke.envs, smoke.steps, smoke.max_turns, smoke.device) == ("sample", 2, 2, 2, "cpu")
    paper = config_from_dict(yaml.safe_load((CONFIGS / "alfworld-paper.yaml").read_text()))
    # SPEC §9, the authors' ALFWorld run (envs and mini-batch rows per rank, on their 4 GPUs).
    assert paper.model == "Qwen/Qwen2.5-1.5B-Instruct" and paper.estimator == "hae"
    assert (4 * paper.envs, 4 * paper.mini_batch_size, paper.micro_batch_size) == (128, 256, 16)
    assert (paper.steps, paper.max_turns, paper.max_new_tokens, paper.max_prompt_length) == (150, 50, 512, 2048)
    assert (paper.gamma, paper.lam_turn, paper.lam_seg, paper.norm_adv, paper.bootstrap_truncated) == (
        1.0, 1.0, 0.95, True, True)
    assert (paper.keep_penalty, paper.keep_penalty_mode, paper.keep_consistency_penalty,
            paper.invalid_action_penalty_coef) == (-0.3, "normalized", -0.3, 0.1)
    assert (paper.actor_lr, paper.critic_lr, paper.weight_decay, paper.grad_clip) == (1e-6, 1e-5, 0.01, 1.0)
    assert (paper.ppo_epochs, paper.clip_ratio, paper.clip_ratio_c, paper.entropy_coeff, paper.kl_coef) == (
        1, 0.2, 3.0, 0.001, 0.01)
    assert (paper.cliprange_value, paper.high_value_coef, paper.term_value_coef, paper.history_length) == (
        0.5, 1.0, 1.0, 2)
    assert (paper.temperature, paper.seed, paper.eval_every, paper.eval_envs) == (1.0, 6, 5, 128)


def test_the_smoke_config_parses_through_the_command_line(tmp_path):
    proc = hiper("train", "--config", str(CONFIGS / "cpu-smoke.yaml"), "--run-dir", str(tmp_path / "run"), "--check",
                 cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    expected = config_from_dict({**yaml.safe_load((CONFIGS / "cpu-smoke.yaml").read_text()),
                                 "run_dir": str(tmp_path / "run")})
    assert config_from_dict(yaml.safe_load(proc.stdout)) == expected  # what --check prints is a config file too
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------------------- help and vocabulary
def commands(parser: argparse.ArgumentParser, prefix: str = "hiper"):
    """(name, parser) of every command and subcommand."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield f"{prefix} {name}", child
                yield from commands(child, f"{prefix} {name}")


def flags(parser: argparse.ArgumentParser) -> set[str]:
    return {flag for action in parser._actions if action.help is not argparse.SUPPRESS
            for flag in action.option_strings}


def test_every_flag_has_a_description_and_shows_its_default(monkeypatch):
    monkeypatch.setenv("COLUMNS", "1000")  # help on one line per flag: no word broken at a hyphen
    for name, parser in commands(build_parser()):
        for action in parser._actions:
            if action.help is argparse.SUPPRESS or isinstance(action, argparse._SubParsersAction):
                continue
            assert action.help and action.help.strip(), f"{name} {action.option_strings or action.dest}"
    parser = dict(commands(build_parser()))
    text = " ".join(parser["hiper train"].format_help().split())
    assert "--model MODEL Hugging Face name or path of the policy (default: SmolLM2-135M-Instruct, offline)" in text
    assert "--lam-seg LAM_SEG GAE lambda of the segment level, in [0, 1] (default: 0.95)" in text
    assert ("--norm-adv [true|false] normalise each advantage over the turns it lands on (the authors' setting; "
            "with small batches that mostly win, false kept the keychest policy where true lost it: "
            "docs/learning/stability.md) (default: true)") in text
    assert "--estimator {hae,gae,turn_gae,grpo,rloo,gigpo}" in text
    assert "--keep-penalty-mode {fixed,normalized}" in text and "--gigpo-mode {mean_norm,mean_std_norm}" in text
    assert "--env ENV alfworld, textworld, scienceworld, twx (TextWorld-Express), keychest, or module:attribute" in text
    rollout = " ".join(parser["hiper rollout"].format_help().split())
    assert "--max-turns MAX_TURNS turns per episode (default: the device profile's, cpu 20 / gpu 50)" in rollout
    assert "--tiny " not in rollout  # the old spelling works, unlisted
    evaluate = " ".join(parser["hiper eval"].format_help().split())
    assert "--temperature TEMPERATURE sampling temperature (0: greedy) (default: 0.4)" in evaluate


def test_one_vocabulary_across_commands():
    parser = dict(commands(build_parser()))
    shared = {"--env", "--split", "--data", "--max-turns", "--max-new-tokens", "--seed"}
    for name in ("hiper rollout", "hiper eval", "hiper train", "hiper bench variance"):
        assert shared <= flags(parser[name]), name
    for name in ("hiper rollout", "hiper eval", "hiper train"):
        assert {"--tasks", "--temperature", "--device", "--workers"} <= flags(parser[name]), name
    for name in ("hiper rollout", "hiper train", "hiper bench variance"):
        assert {"--tiny-model", "--model"} <= flags(parser[name]), name
    read = build_parser().parse_args
    assert read(["rollout", "--tiny"]).tiny_model is True  # the old spelling
    assert read(["rollout", "--tiny-model", "false"]).tiny_model is False
    assert read(["bench", "variance", "--tiny"]).tiny_model is True
    assert read(["train", "--tiny-model"]).tiny_model is True
    assert read(["train", "--tiny-model", "true"]).tiny_model is True
    assert read(["train", "--norm-adv", "no"]).norm_adv is False
    assert read(["train"]).norm_adv is None  # not given: a --config file's value stands
    assert read(["rollout", "--progress", "false"]).progress is False and read(["eval", "--checkpoint", "x"]).progress


def test_the_training_docs_list_every_train_flag():
    docs = (REPO / "docs" / "training.md").read_text()
    table = docs[docs.index("`hiper train` options"):]
    missing = [f.name for f in dataclasses.fields(TrainConfig) if f"`--{f.name.replace('_', '-')}`" not in table]
    assert not missing
    assert all(f"`{flag}`" in table for flag in ("--config", "--resume", "--check", "--debug"))


def test_every_train_flag_is_in_exactly_one_help_group(monkeypatch):
    from hiper import flags as hiper_flags

    fields = [f.name for f in dataclasses.fields(TrainConfig)]
    grouped = [name for _, names in hiper_flags.TRAIN_FLAG_GROUPS.values() for name in names]
    assert sorted(grouped) == sorted(fields)  # none left out, none twice, none that is no field
    train = dict(commands(build_parser()))["hiper train"]
    sections = {group.title: {action.dest for action in group._group_actions} for group in train._action_groups}
    for title, (_, names) in hiper_flags.TRAIN_FLAG_GROUPS.items():
        assert sections[title] == set(names), title
    # A field added to TrainConfig and to no group stops the parser's construction, naming it.
    groups = dict(hiper_flags.TRAIN_FLAG_GROUPS)
    description, names = groups["run"]
    groups["run"] = (description, tuple(name for name in names if name != "seed"))
    monkeypatch.setattr(hiper_flags, "TRAIN_FLAG_GROUPS", groups)
    with pytest.raises(ValueError, match="no group for the TrainConfig field.s. seed"):
        build_parser()


def test_hiper_help_names_the_first_commands_and_they_parse(capsys):
    import shlex

    code, out, _ = run(["--help"], capsys)
    assert code == 0
    examples = out[out.index("first commands"):]
    lines = [line.split("#")[0].strip() for line in examples.replace("\\\n", " ").splitlines()]
    commands_shown = [shlex.split(line) for line in lines if line.startswith("hiper ")]
    assert [argv[1] for argv in commands_shown] == ["hae", "sft", "eval", "train", "train"]
    assert "--env keychest --model runs/keychest-sft" in examples  # training from the warm start
    for argv in commands_shown:
        build_parser().parse_args(argv[1:])  # no stale flag: argparse would exit


@pytest.mark.parametrize("argv, line", [
    (["train", "--lr", "1e-4"], "unrecognized arguments: --lr 1e-4; did you mean --actor-lr, --critic-lr? "
                                "(see hiper train --help)"),
    (["train", "--temprature=0.5"], "unrecognized arguments: --temprature=0.5; did you mean --temperature? "
                                    "(see hiper train --help)"),
    (["train", "--lr", "1", "--epochs", "2"], "unrecognized arguments: --lr 1 --epochs 2; did you mean --actor-lr, "
                                              "--critic-lr (for --lr), --ppo-epochs, --critic-epochs (for --epochs)? "
                                              "(see hiper train --help)"),
    (["rollout", "--turns", "3"], "unrecognized arguments: --turns 3; did you mean --max-turns? "
                                  "(see hiper rollout --help)"),
    (["train", "--xyz"], "unrecognized arguments: --xyz (see hiper train --help)"),
])
def test_an_unknown_flag_is_answered_with_the_closest_ones(argv, line, capsys, no_model):
    assert run(argv, capsys) == (2, "", f"hiper: error: {line}\n")
