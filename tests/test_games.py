"""Which games the trainer, evaluation and `hiper rollout` play (hiper.envs.registry)."""
from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from hiper.envs import alfworld as alf
from hiper.envs.registry import draw_order, evaluation_specs, game_key, game_list, task_mix, training_specs
from hiper.format import PlanExecuteState, build_prompt

SHARED_ALFWORLD = Path(__file__).resolve().parents[2] / "shared" / "data" / "alfworld"
TOKENIZER = str(Path(__file__).parent / "fixtures" / "smollm2_tokenizer")
needs_java = pytest.mark.skipif(shutil.which("java") is None, reason="ScienceWorld needs Java")


@pytest.fixture(scope="module")
def alfworld_data(tmp_path_factory):
    archive = SHARED_ALFWORLD / "alfworld_tw-pddl_all_splits.tar.xz"
    if not archive.is_file():
        pytest.skip("the shared ALFWorld archive is not beside the checkout")
    return str(alf.prepare_data(archive, tmp_path_factory.mktemp("alfworld")))


def test_default_run_draws_every_task_type_in_proportion(alfworld_data):
    """The first 600 games of the default run (4 envs x 150 steps) cover every task type of the
    split within 5 points of its share; walking the sorted split would cover about two."""
    split = Counter(alf.task_type_of(g) for g in alf.list_games("train", alfworld_data))
    drawn = [s for step in range(150) for s in training_specs("alfworld", "train", 4, step, data=alfworld_data)]
    assert len(drawn) == 600 and len({s.kwargs["game_file"] for s in drawn}) == 600  # one epoch: no repeats
    mix = Counter(alf.task_type_of(s.kwargs["game_file"]) for s in drawn)
    assert set(mix) == set(split) and len(split) == 6
    for task_type, count in split.items():
        share = count / sum(split.values())
        assert abs(mix[task_type] / 600 - share) < 0.05, (task_type, mix[task_type], share)


def test_schedule_reshuffles_every_epoch_and_resumes_from_the_step():
    n = 6
    draws = draw_order(n, range(0, 3 * n), seed=0)
    epochs = draws.reshape(3, n)
    assert all(sorted(e) == list(range(n)) for e in epochs)  # every epoch plays every game once
    assert len({tuple(e) for e in epochs}) == 3  # in a new order each time
    # Any window of the schedule is what the whole schedule holds there: resuming at a step
    # (or a step straddling an epoch boundary) draws what the uninterrupted run drew.
    np.testing.assert_array_equal(draw_order(n, range(4, 9), seed=0), draws[4:9])
    assert not np.array_equal(draw_order(n, range(0, n), seed=1), draws[:n])  # the seed matters
    first = training_specs("alfworld", "train", 4, 1, data="sample", seed=3)
    assert first == training_specs("alfworld", "train", 4, 1, data="sample", seed=3)


def _keys(env, split, **options):
    return {game_key(s) for s in game_list(env, split, **options)}


@pytest.mark.parametrize("env, held_out", [("alfworld", ("valid_unseen", "valid_seen")),
                                           ("textworld", ("valid", "test")),
                                           ("keychest", ("test",)),
                                           pytest.param("scienceworld", ("dev", "test"), marks=needs_java)])
def test_no_evaluation_game_is_a_training_game(env, held_out, alfworld_data):
    options = {"data": alfworld_data} if env == "alfworld" else {}
    train = _keys(env, "train", **options)
    assert train
    for split in held_out:
        assert not train & _keys(env, split, **options), split
    # Evaluation defaults to the held-out split and never plays a training game.
    played = {game_key(s) for s in evaluation_specs(env, None, 5, **options)}
    assert played <= _keys(env, held_out[0], **options) and not played & train
    # Training draws from the training split only.
    drawn = {game_key(s) for step in range(3) for s in training_specs(env, "train", 4, step, **options)}
    assert drawn <= train


def test_evaluation_refuses_more_games_than_the_split_holds():
    assert len({game_key(s) for s in evaluation_specs("alfworld", "valid_unseen", 6, data="sample")}) == 6
    with pytest.raises(ValueError, match="episodes: the valid_unseen split of alfworld holds 6 distinct games"):
        evaluation_specs("alfworld", "valid_unseen", 10, data="sample")
    with pytest.raises(ValueError, match="episodes: need at least one game"):
        evaluation_specs("alfworld", None, 0, data="sample")
    with pytest.raises(ValueError, match="envs: need at least one environment"):
        training_specs("alfworld", "train", -2, 0, data="sample")
    with pytest.raises(ValueError, match="split: textworld has the splits train, valid, test"):
        game_list("textworld", "valid_unseen")
    with pytest.raises(ValueError, match="env: expected one of alfworld"):
        game_list("minecraft", "train")


ROLES = {"alfworld": "household environment", "textworld": "text adventure", "scienceworld": "science environment",
         "keychest": "small room with a locked chest"}


@pytest.mark.parametrize("env", ["alfworld", "textworld", "keychest", pytest.param("scienceworld", marks=needs_java)])
def test_every_path_prompts_with_the_environments_own_role(env, tmp_path, monkeypatch):
    """Training, evaluation and `hiper rollout` render prompts that name the environment played."""
    import hiper.rollout
    from hiper.cli import main
    from hiper.trainer import Trainer, TrainConfig

    monkeypatch.setenv("HIPER_CACHE", str(tmp_path / "cache"))
    seen: list[str] = []
    render = hiper.rollout.render_prompt
    monkeypatch.setattr(hiper.rollout, "render_prompt", lambda tok, msg: seen.append(msg) or render(tok, msg))
    others = [role for name, role in ROLES.items() if name != env]

    def check(where):
        assert seen, where
        assert all(ROLES[env] in p and not any(o in p for o in others) for p in seen), where
        seen.clear()

    data = ["--data", "sample"] if env == "alfworld" else []
    trainer = Trainer(TrainConfig(env=env, data="sample" if env == "alfworld" else "", tiny_model=True,
                                  model=TOKENIZER, envs=1, steps=1, max_turns=1, max_new_tokens=4, kl_coef=0.0,
                                  run_dir=str(tmp_path / "run"), save_every=0, eval_every=1, eval_envs=1))
    metrics = trainer.train_step()
    assert sum(metrics["task_types"].values()) == 1
    check("training")
    from hiper.evaluate import evaluate

    report = evaluate(trainer.actor, trainer.tokenizer, env, 1, max_turns=1, max_new_tokens=4,
                      data="sample" if env == "alfworld" else None)
    assert report["split"] == {"alfworld": "valid_unseen", "textworld": "valid", "scienceworld": "dev",
                               "keychest": "test"}[env]
    check("evaluation")
    assert main(["rollout", "--env", env, *data, "--tiny", "--model", TOKENIZER, "--envs", "1", "--max-turns", "1",
                 "--max-new-tokens", "4"]) == 0
    check("hiper rollout")


def test_a_family_of_your_own_trains_with_the_trainer_and_the_command_line(tmp_path, capsys):
    import json

    from hiper.cli import main
    from hiper.envs import registry
    from hiper.format import format_turn
    from hiper.trainer import Trainer, TrainConfig
    from games_for_tests import COUNTING

    registry.register(COUNTING)  # for this test only (conftest's registry_as_it_was)
    trainer = Trainer(TrainConfig(env="counting", tiny_model=True, model=TOKENIZER, envs=2, steps=2, max_turns=2,
                                  max_new_tokens=4, run_dir=str(tmp_path / "run"), save_every=0, kl_coef=0.0))
    history = trainer.train(log=None)
    mixes = [m["task_types"] for m in history]
    assert all(sum(m.values()) == 2 for m in mixes)
    assert set().union(*mixes) <= {"goal1", "goal2", "goal3", "goal4"}  # training games only
    assert main(["train", "--env", "games_for_tests:COUNTING", "--tiny-model", "true", "--model", TOKENIZER,
                 "--envs", "1", "--steps", "1", "--max-turns", "1", "--max-new-tokens", "4",
                 "--run-dir", str(tmp_path / "cli")]) == 0
    row = json.loads((tmp_path / "cli" / "metrics.jsonl").read_text().splitlines()[0])
    assert sum(row["task_types"].values()) == 1
    prompt = build_prompt(PlanExecuteState(task="count"), "count 0", ["inc"], role=COUNTING.role)
    assert prompt.startswith(COUNTING.role) and "household" not in prompt
    assert format_turn("SWITCH", "a", "inc")  # the format the role line precedes is unchanged


def test_task_mix_counts_each_environment_of_a_step():
    specs = training_specs("alfworld", "train", 6, 0, data="sample", group_size=2)
    mix = task_mix("alfworld", specs)
    assert sum(mix.values()) == 6 and all(v % 2 == 0 for v in mix.values())
    only = training_specs("alfworld", "train", 2, 0, data="sample", tasks=["pick_and_place_simple"])
    assert task_mix("alfworld", only) == {"pick_and_place_simple": 2}


def test_training_needs_its_data_named_before_any_model_loads(tmp_path, monkeypatch):
    from hiper import models
    from hiper.trainer import Trainer, TrainConfig

    monkeypatch.delenv("ALFWORLD_DATA", raising=False)
    monkeypatch.setattr(models, "load", lambda *a, **k: pytest.fail("a model was loaded"))
    with pytest.raises(FileNotFoundError, match="hiper prepare-data.*--data sample"):
        Trainer(TrainConfig(run_dir=str(tmp_path / "run")))
    with pytest.raises(ValueError, match="split: textworld has the splits"):
        Trainer(TrainConfig(env="textworld", split="valid_unseen", run_dir=str(tmp_path / "run")))
    with pytest.raises(ValueError, match="eval_envs: the valid_unseen split of alfworld holds 6"):
        Trainer(TrainConfig(data="sample", eval_every=1, eval_envs=7, run_dir=str(tmp_path / "run")))


def test_prepare_data_command_prints_the_export(tmp_path, capsys):
    from hiper.cli import main

    archive = SHARED_ALFWORLD / "alfworld_tw-pddl_all_splits.tar.xz"
    assert main(["prepare-data", str(tmp_path / "nope.tar.xz"), str(tmp_path)]) == 1
    assert capsys.readouterr().err.startswith("hiper: error: archive: no file at")
    if not archive.is_file():
        pytest.skip("the shared ALFWorld archive is not beside the checkout")
    assert main(["prepare-data", str(archive), str(tmp_path / "data")]) == 0
    out = capsys.readouterr().out.strip()
    assert out == f"export ALFWORLD_DATA={(tmp_path / 'data' / 'alfworld').resolve()}"
    assert len(alf.list_games("valid_unseen", out.split("=", 1)[1])) == 134


def test_eval_and_rollout_take_a_device(tmp_path, capsys):
    import torch

    from hiper.cli import main
    from hiper.models import resolve_device

    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="device: expected auto, cpu, cuda"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(SystemExit):  # refused with the flags, before a model loads
            main(["rollout", "--tiny", "--model", TOKENIZER, "--data", "sample", "--device", "cuda"])
        assert "--device: cuda asked for, but this machine has no usable CUDA" in capsys.readouterr().err
    assert main(["rollout", "--tiny", "--model", TOKENIZER, "--data", "sample", "--device", "cpu", "--envs", "1",
                 "--max-turns", "1", "--max-new-tokens", "4"]) == 0
