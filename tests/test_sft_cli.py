"""`hiper sft` (hiper.warm_start): expert demonstrations, rendered as the rollout prompts, fine-tune a
model written as a model directory that `hiper eval --checkpoint` and `hiper train --model` take;
bad input stops it on one line naming the flag, before any model loads; the directory appears whole
or not at all."""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from hiper import demos
from hiper.engines import Generation
from hiper.engines.base import encode_prompts
from hiper.envs import EnvPool
from hiper.envs import keychest
from hiper.envs.base import ExpertError
from hiper.envs.registry import game_list
from hiper.format import KEEP, SWITCH, format_turn
from hiper.models import prepare_tokenizer, tiny_random_model
from hiper.rollout import RolloutConfig, RolloutEngine
from hiper.warm_start import check_out, write_atomically

from cli_runs import hiper, run

TOKENIZER = str(Path(__file__).parent / "fixtures" / "smollm2_tokenizer")
# A run of seconds: the tiny model, a few keychest episodes, a few steps.
QUICK = ["--env", "keychest", "--tiny-model", "--model", TOKENIZER, "--episodes", "6", "--max-turns", "4",
         "--expert-noise", "0.3", "--steps", "3", "--batch-size", "4", "--micro-batch-size", "4", "--lr", "5e-3"]


@pytest.fixture(scope="module")
def tokenizer():
    return prepare_tokenizer(AutoTokenizer.from_pretrained(TOKENIZER))


@pytest.fixture(scope="module")
def sft_dir(tmp_path_factory):
    """The directory one `hiper sft` run wrote, and the run."""
    where = tmp_path_factory.mktemp("sft")
    proc = hiper("sft", *QUICK, "--out", str(where / "out"), cwd=where)
    assert proc.returncode == 0, proc.stderr
    return where / "out", proc


# ---------------------------------------------------------------------------- the output, and who takes it
def test_writes_a_model_directory_with_its_report(sft_dir, tokenizer):
    out, proc = sft_dir
    assert {"config.json", "model.safetensors", "tokenizer.json", "sft.json", "demos.jsonl"} <= set(os.listdir(out))
    assert os.listdir(out.parent) == ["out"]  # no temporary left beside it
    report = json.loads((out / "sft.json").read_text())
    assert report["settings"]["episodes"] == 6 and report["settings"]["split"] == "train"  # the family's training split
    lines = (out / "demos.jsonl").read_text().splitlines()
    played = [json.loads(line) for line in lines]
    counts = report["demonstrations"]
    assert counts["played"] == 6 and counts["episodes"] == len(played) == counts["won"] >= 1  # lost ones dropped
    assert counts["pairs"] == counts["turns"] == sum(len(d["turns"]) for d in played)
    assert {t["switch"] for d in played for t in d["turns"]} <= {KEEP, SWITCH}
    assert counts["response_tokens"] < counts["prompt_tokens"]
    assert len(report["losses"]) == 3
    # The first loss is the untrained model's: about log(vocabulary size) per response token.
    assert report["losses"][0] == pytest.approx(math.log(len(tokenizer)), rel=0.05)
    assert set(report["seconds"]) == {"load", "collect", "render", "train", "save"}
    # What runs, on stdout; the bars of the episodes and the steps (with the loss), on stderr.
    assert proc.stdout.startswith("hiper sft: a tiny random model")
    assert f"{counts['turns']} turns -> {counts['pairs']} pairs" in proc.stdout
    assert "fine-tuning: 3 steps x 4 pairs" in proc.stdout and f"wrote {out}" in proc.stdout
    assert "experts: 100%" in proc.stderr and "sft: 100%" in proc.stderr and "tok/s" in proc.stderr


def test_hiper_eval_takes_the_directory(sft_dir, capsys):
    out, _ = sft_dir
    code, stdout, _ = run(["eval", "--checkpoint", str(out), "--env", "keychest", "--episodes", "2", "--max-turns",
                           "2", "--max-new-tokens", "40", "--progress", "false"], capsys)
    assert code == 0
    assert json.loads(stdout)["episodes"] == 2


def test_hiper_train_takes_the_directory(sft_dir, tmp_path, capsys):
    out, _ = sft_dir
    code, stdout, err = run(["train", "--model", str(out), "--env", "keychest", "--steps", "1", "--envs", "1",
                             "--max-turns", "2", "--max-new-tokens", "8", "--device", "cpu", "--progress", "false",
                             "--run-dir", str(tmp_path / "run")], capsys)
    assert code == 0, err
    assert f"model: {out} (" in stdout  # the banner names the model it loaded
    assert len((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()) == 1


def test_lora_writes_a_merged_plain_model(tmp_path, tokenizer, capsys):
    from safetensors.torch import load_file

    out = tmp_path / "lora"
    code, _, err = run(["sft", *QUICK, "--lora-rank", "4", "--progress", "false", "--out", str(out)], capsys)
    assert code == 0, err
    assert not (out / "adapter_config.json").exists() and not (out / "adapter_model.safetensors").exists()
    weights = load_file(str(out / "model.safetensors"))
    assert not [name for name in weights if "lora" in name]
    model = AutoModelForCausalLM.from_pretrained(out)  # transformers alone: no PEFT involved
    assert type(model).__name__ == "LlamaForCausalLM"
    # The adapters' update is in the targeted projections; what LoRA leaves alone is the base's.
    base = tiny_random_model(tokenizer, seed=0).state_dict()
    trained = model.state_dict()
    for name in ("model.layers.0.self_attn.q_proj.weight", "model.layers.1.mlp.down_proj.weight"):
        assert not torch.equal(trained[name], base[name]), name
    torch.testing.assert_close(trained["model.embed_tokens.weight"], base["model.embed_tokens.weight"], rtol=0, atol=0)
    assert json.loads((out / "sft.json").read_text())["model"]["lora_merged"] is True


# ---------------------------------------------------------------------------- bad input: one line, nothing loaded


def test_a_bad_value_is_one_line_naming_its_flag(tmp_path):
    proc = hiper("sft", *QUICK, "--episodes", "0", "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert (proc.returncode, proc.stdout) == (1, "")
    assert proc.stderr.splitlines() == ["hiper: error: --episodes: must be >= 1, got 0"]
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("argv, code, line", [
    (["--episodes", "-3"], 1, "--episodes: must be >= 1, got -3"),
    (["--expert-noise", "1.5"], 1, "--expert-noise: must be in [0, 1), got 1.5"),
    (["--expert-noise", "-0.1"], 1, "--expert-noise: must be in [0, 1), got -0.1"),
    (["--plan-noise", "1"], 1, "--plan-noise: must be in [0, 1), got 1.0"),
    (["--max-turns", "0"], 1, "--max-turns: must be >= 1, got 0"),
    (["--workers", "-1"], 1, "--workers: must be >= 0, got -1"),
    (["--steps", "0"], 1, "--steps: expected a positive integer, got 0"),
    (["--steps", "two"], 2, "--steps: expected an integer, got 'two' (see hiper sft --help)"),
    (["--batch-size", "0"], 1, "--batch-size: expected a positive integer, got 0"),
    (["--lr", "0"], 1, "--lr: expected a positive number, got 0.0"),
    (["--schedule", "cosine"], 2, "--schedule: invalid choice: 'cosine' (choose from 'linear', 'constant') "
                                  "(see hiper sft --help)"),
    (["--lora-dropout", "1"], 1, "--lora-dropout: must be in [0, 1), got 1.0"),
    (["--lora-targets", " , "], 1, "--lora-targets: must be comma-separated module names, got ' , '"),
    (["--seed", "-1"], 1, "--seed: must be in [0, 2**32), got -1"),
    (["--keep-lost", "maybe"], 2, "--keep-lost: expected true or false, got 'maybe' (see hiper sft --help)"),
    (["--device", "tpu"], 1, "--device: expected auto, cpu, cuda or cuda:N, got 'tpu'"),
    (["--env", "keychest", "--split", "valid"], 1, "--split: keychest has the splits train, test; got 'valid'"),
    (["--env", "keychest", "--tasks", "boil"], 1, "--tasks: keychest games have no task subsets"),
    (["--env", "games_for_tests:COUNTING"], 1,
     "--env: games_for_tests:COUNTING's games (CountingEnv) have no expert to demonstrate with; hiper sft needs an "
     "environment that implements TextEnv.expert_turn"),
    (["--env", "alfworld", "--data", "sample", "--plan-noise", "0.3"], 1,
     "--plan-noise: alfworld's games (AlfworldEnv) have no planning errors to demonstrate "
     "(TextEnv.expert_mistakes); use --expert-noise"),
])
def test_every_bad_value_is_refused_before_loading(argv, code, line, tmp_path, monkeypatch, capsys, no_model):
    monkeypatch.chdir(tmp_path)
    assert run(["sft", *QUICK, *argv, "--out", str(tmp_path / "out")], capsys) == (code, "", f"hiper: error: {line}\n")
    assert not (tmp_path / "out").exists()


def test_an_unknown_env_is_refused(tmp_path, capsys, no_model):
    code, out, err = run(["sft", *QUICK, "--env", "nope", "--out", str(tmp_path / "out")], capsys)
    assert (code, out) == (1, "") and err.count("\n") == 1
    assert err.startswith("hiper: error: --env: expected one of alfworld, ") and err.endswith("got 'nope'\n")


def test_an_existing_out_is_refused_unless_it_is_an_earlier_output_and_overwrite_is_given(tmp_path, capsys,
                                                                                          no_model):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    refuse = f"hiper: error: --out: {out} holds files but no sft.json, so it is no hiper sft output; choose another "
    for extra in ([], ["--overwrite"]):  # --overwrite never deletes what hiper sft did not write
        code, _, err = run(["sft", *QUICK, "--out", str(out), *extra], capsys)
        assert code == 1 and err.startswith(refuse)
    (out / "sft.json").write_text("{}")
    assert run(["sft", *QUICK, "--out", str(out)], capsys) == (
        1, "", f"hiper: error: --out: {out} holds an earlier hiper sft output; pass --overwrite to replace it\n")
    (tmp_path / "file").write_text("")
    assert run(["sft", *QUICK, "--out", str(tmp_path / "file")], capsys) == (
        1, "", f"hiper: error: --out: {tmp_path / 'file'} exists and is not a directory\n")
    check_out(out, overwrite=True)  # passes: an earlier output, to be replaced
    empty = tmp_path / "empty"
    empty.mkdir()
    check_out(empty, overwrite=False)


# ---------------------------------------------------------------------------- the directory: whole or not at all
def test_an_interrupted_write_leaves_no_output_and_keeps_the_earlier_one(tmp_path):
    out = tmp_path / "out"

    def interrupted(directory: Path) -> None:
        (directory / "model.safetensors").write_text("half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_atomically(out, interrupted, overwrite=False)
    assert os.listdir(tmp_path) == []  # neither out nor a temporary

    def write(text: str):
        def into(directory: Path) -> None:
            (directory / "model.safetensors").write_text(text)
            (directory / "sft.json").write_text("{}")
        return into

    write_atomically(out, write("first"), overwrite=False)
    with pytest.raises(KeyboardInterrupt):
        write_atomically(out, interrupted, overwrite=True)
    assert (out / "model.safetensors").read_text() == "first" and os.listdir(tmp_path) == ["out"]

    # A killed run leaves its temporary behind; the next run into the same place removes it.
    (tmp_path / ".out.tmp-killed").mkdir()
    write_atomically(out, write("second"), overwrite=True)
    assert (out / "model.safetensors").read_text() == "second" and os.listdir(tmp_path) == ["out"]
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o777 & ~umask  # not the temporary's private 0700


# ---------------------------------------------------------------------------- demonstrations as the rollout prompts
class ScriptedEngine:
    """A rollout engine for one environment that answers each turn with the next of `responses`
    and records the prompts it was given."""

    name = "scripted"

    def __init__(self, tokenizer, responses: list[str]):
        self.tokenizer, self.responses, self.prompts = tokenizer, responses, []

    def generate(self, prompts, settings):
        assert len(prompts) == 1
        self.prompts.append(prompts[0])
        prompt_ids, prompt_mask = encode_prompts(self.tokenizer, prompts, settings.max_prompt_length)
        response = self.tokenizer(self.responses[len(self.prompts) - 1], add_special_tokens=False,
                                  return_tensors="pt")["input_ids"]
        return Generation(prompt_ids, prompt_mask, response, torch.ones_like(response, dtype=torch.bool), 0.0)

    def sync_weights(self, model) -> None:
        pass


def test_rendered_pairs_are_what_the_rollout_prompts(tokenizer):
    """A keychest demonstration long enough for the history window to matter (noisy turns that
    KEEP the sub-goal, then a SWITCH), replayed through the rollout by a scripted engine: the
    rollout's prompts are the rendered prompts, turn for turn, and it plays the same episode."""
    spec = game_list("keychest", "train", max_turns=8)[17]
    demo = next(d for seed in range(100)
                if len((d := demos.play(spec, task_type="keychest", expert_noise=0.6, seed=seed)).turns) >= 5)
    assert [t.switch for t in demo.turns].count(SWITCH) == 2 and KEEP in [t.switch for t in demo.turns]
    config = RolloutConfig.for_env("keychest", max_turns=8, max_new_tokens=64)
    pairs = demos.render([demo], tokenizer, config)
    assert [response for _, response in pairs] == [format_turn(t.switch, t.subgoal, t.action) + "<|im_end|>"
                                                   for t in demo.turns]
    engine = ScriptedEngine(tokenizer, [response for _, response in pairs])
    with EnvPool([spec]) as pool:
        result = RolloutEngine(None, tokenizer, pool, config, engine=engine).run()
    assert engine.prompts == [prompt for prompt, _ in pairs]
    (episode,) = result.episodes
    assert (episode.won, episode.turns, episode.invalid, episode.total_reward) == (True, len(demo.turns), 0,
                                                                                  demo.reward)
    assert "<|im_end|>" == tokenizer.eos_token  # the token the rollout stops at ends every response


def test_an_expert_that_gives_up_drops_its_episode(monkeypatch):
    """ExpertError (an expert that cannot go on) drops the demonstration instead of failing the run."""
    def expert_turn(self):
        if self.room % 2:
            raise ExpertError(f"{self.describe()}: no plan from here")
        return keychest.STAGES[self.has_key]

    monkeypatch.setattr(keychest.KeyChestEnv, "expert_turn", expert_turn)
    kept = demos.collect("keychest", "train", 12, max_turns=4, seed=0, keep_lost=True)
    rooms = [json.loads(d.game.split(":", 1)[1])["room"] for d in kept]
    assert rooms and all(room % 2 == 0 for room in rooms) and len(kept) < 12
