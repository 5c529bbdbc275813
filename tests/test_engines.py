"""Rollout engines (hiper.engines): the same generation contract from Hugging Face generate and
vLLM, and vLLM's weights kept equal to the trained policy's."""
from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer

from engines_for_tests import ENGINE_NAMES, engine_for
from hiper import models
from hiper.engines import Engine, SamplingSettings, make_engine, resolve_engine
from hiper.engines.base import mask_through_first_stop
from hiper.engines.vllm import is_available as vllm_available
from hiper.policy import response_logprobs

TOKENIZER = Path(__file__).parent / "fixtures" / "smollm2_tokenizer"
needs_vllm = pytest.mark.skipif(not vllm_available(), reason="vLLM is not installed (bash scripts/install_vllm.sh)")


@pytest.fixture(scope="module")
def tiny():
    tok = models.prepare_tokenizer(AutoTokenizer.from_pretrained(TOKENIZER))
    # head size 64: one vLLM's attention kernels take on every backend
    return models.tiny_random_model(tok, hidden_size=128, heads=2), tok


def settings(**values) -> SamplingSettings:
    base = dict(max_new_tokens=12, max_prompt_length=256, temperature=1.0, top_p=1.0, do_sample=True, stop_ids=(2,))
    return SamplingSettings(**{**base, **values})


PROMPTS = ["hello there", "a longer prompt, so that the first one is left-padded", "x"]


@pytest.mark.parametrize("name", ENGINE_NAMES)
def test_generation_contract(tiny, name):
    model, tok = tiny
    engine = engine_for(name, model, tok)
    assert isinstance(engine, Engine) and engine.name == name
    out = engine.generate(PROMPTS, settings())
    enc = tok(PROMPTS, return_tensors="pt", padding=True, add_special_tokens=False)
    # prompts left-padded exactly as the tokenizer pads them
    assert torch.equal(out.prompt_ids, enc["input_ids"]) and torch.equal(out.prompt_mask, enc["attention_mask"].bool())
    assert out.prompt_mask[0, 0].item() is False and out.prompt_mask[:, -1].all()
    n, width = out.responses.shape
    assert n == 3 and 1 <= width <= 12
    assert out.response_mask.shape == (3, width) and out.response_mask.dtype == torch.bool
    # each response mask is a prefix, at least one token long, ending at the first stop token if any
    lengths = out.response_mask.sum(dim=1)
    assert torch.equal(out.response_mask, torch.arange(width) < lengths.unsqueeze(1)) and (lengths >= 1).all()
    assert torch.equal(out.response_mask, mask_through_first_stop(out.responses, (2,)) & out.response_mask)
    assert out.prefill_seconds >= 0
    if out.logprobs is not None:
        assert out.logprobs.shape == (3, width) and (out.logprobs[~out.response_mask] == 0).all()
        assert (out.logprobs[out.response_mask] <= 0).all()


@pytest.mark.parametrize("name", ENGINE_NAMES)
def test_greedy_is_repeatable_and_stops(tiny, name):
    model, tok = tiny
    engine = engine_for(name, model, tok)
    first = engine.generate(PROMPTS, settings(temperature=0.0))
    assert torch.equal(first.responses, engine.generate(PROMPTS, settings(temperature=0.0)).responses)
    # make the first greedy token of every prompt a stop token: every response is that one token
    stop = tuple(first.responses[:, 0].unique().tolist())
    stopped = engine.generate(PROMPTS, settings(temperature=0.0, stop_ids=stop))
    assert stopped.responses.shape == (3, 1) and stopped.response_mask.all()
    assert torch.equal(stopped.responses[:, 0], first.responses[:, 0])


def test_prompt_longer_than_the_limit_is_refused(tiny):
    model, tok = tiny
    with pytest.raises(ValueError, match="max_prompt_length"):
        make_engine("hf", model, tok, max_model_len=64).generate(PROMPTS, settings(max_prompt_length=3))


class FakeVLLMEngine:
    """Stands for hiper.engines.vllm.VLLMEngine, so that a test can see it chosen without vLLM."""

    name = "vllm"

    def __init__(self, model, tokenizer, **options):
        pass


@pytest.fixture
def vllm_installed(monkeypatch):
    """`vllm_installed(flag)`: vLLM looks importable, or not, from then on; its engine is the fake."""
    import hiper.engines.vllm as vllm_engine

    monkeypatch.setattr(vllm_engine, "VLLMEngine", FakeVLLMEngine)
    return lambda flag: monkeypatch.setattr(vllm_engine, "is_available", lambda: flag)


def test_engine_names(vllm_installed):
    assert resolve_engine("hf") == "hf" and resolve_engine("vllm") == "vllm"
    vllm_installed(False)
    assert resolve_engine("auto") == "hf"
    vllm_installed(True)
    assert resolve_engine("auto") == "vllm"
    with pytest.raises(ValueError, match="engine: expected one of auto, hf, vllm, got 'sglang'"):
        resolve_engine("sglang")


@pytest.mark.parametrize("installed", [False, True])
def test_a_lora_policy_goes_to_hf(vllm_installed, installed):
    vllm_installed(installed)
    assert resolve_engine("auto", lora=True) == resolve_engine("hf", lora=True) == "hf"
    with pytest.raises(ValueError, match="engine: vllm does not serve LoRA policies yet"):
        resolve_engine("vllm", lora=True)


def test_train_resolves_auto_by_the_rule(tmp_path, vllm_installed):
    pytest.importorskip("peft")
    from hiper.trainer import TrainConfig, Trainer

    for lora_rank in (0, 4):
        trainer = Trainer(TrainConfig(env="alfworld", split="valid_unseen", data="sample", tiny_model=True,
                                      model=str(TOKENIZER), envs=1, run_dir=str(tmp_path / f"run{lora_rank}"),
                                      estimator="rloo", group_size=1, kl_coef=0.0, lora_rank=lora_rank))
        for installed in (False, True):
            vllm_installed(installed)
            expected = "vllm" if installed and not lora_rank else "hf"
            trainer.engine = None  # none built yet: the next rollout builds one by the rule
            assert trainer._engine_name() == expected, (lora_rank, installed)
            assert trainer._rollout_engine().name == expected, (lora_rank, installed)


def test_hf_engine_sync_adopts_the_model(tiny):
    model, tok = tiny
    engine = make_engine("hf", model, tok, max_model_len=64)
    other = models.tiny_random_model(tok, hidden_size=128, heads=2, seed=1)
    engine.sync_weights(other)
    assert engine.model is other


def test_vllm_logs_to_stderr_and_only_warnings_unless_told_otherwise(monkeypatch):
    """stdout is hiper's (hiper eval's JSON report): vLLM's logging goes to stderr, at WARNING. The
    variables are set before vLLM is imported, where it reads them; a user's own values win."""
    import os

    import hiper.engines.vllm as vllm_engine

    def imported_with(**environment):
        # Every variable _import_vllm sets is recorded first (setenv), so the test leaves the
        # environment as it found it.
        for name in ("VLLM_LOGGING_STREAM", "VLLM_LOGGING_LEVEL", "VLLM_ENABLE_V1_MULTIPROCESSING",
                     "VLLM_CPU_KVCACHE_SPACE"):
            monkeypatch.setenv(name, "")
            monkeypatch.delenv(name)
        for name, value in environment.items():
            monkeypatch.setenv(name, value)
        try:
            vllm_engine._import_vllm()
        except ImportError:
            pass  # without vLLM the variables are set all the same
        return os.environ["VLLM_LOGGING_STREAM"], os.environ["VLLM_LOGGING_LEVEL"]

    assert imported_with() == ("ext://sys.stderr", "WARNING")
    assert imported_with(VLLM_LOGGING_LEVEL="DEBUG") == ("ext://sys.stderr", "DEBUG")


@needs_vllm
def test_vllm_options_are_checked(tiny):
    model, tok = tiny
    with pytest.raises(ValueError, match="max_model_len"):
        make_engine("vllm", model, tok, max_model_len=0)
    with pytest.raises(ValueError, match="gpu_memory_utilization"):
        make_engine("vllm", model, tok, max_model_len=64, gpu_memory_utilization=1.5)


@needs_vllm
def test_vllm_logprobs_follow_the_policy_through_an_update(tiny):
    """The engine's sampling log-probs equal the trainer's (hiper.policy.response_logprobs at the
    sampling temperature) before an update and, once synced, after it; and the update changed them."""
    model, tok = tiny
    engine = engine_for("vllm", model, tok)
    temperature = 0.7

    def scored_by(policy, out):
        ids = torch.cat([out.prompt_ids, out.responses], dim=1)
        mask = torch.cat([out.prompt_mask, out.response_mask], dim=1).long()
        with torch.no_grad():
            return response_logprobs(policy, ids, mask, out.responses.shape[1], temperature=temperature)[
                out.response_mask]

    before = engine.generate(PROMPTS, settings(temperature=temperature))
    torch.testing.assert_close(before.logprobs[before.response_mask], scored_by(model, before), atol=2e-2, rtol=0)
    old_policy = copy.deepcopy(model)
    with torch.no_grad():  # an "update": every weight moves
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    try:
        engine.sync_weights(model)
        after = engine.generate(PROMPTS, settings(temperature=temperature))
        sampled = after.logprobs[after.response_mask]
        torch.testing.assert_close(sampled, scored_by(model, after), atol=2e-2, rtol=0)
        assert (sampled - scored_by(old_policy, after)).abs().max() > 0.1  # not the old weights any more
    finally:
        model.load_state_dict(old_policy.state_dict())  # the module's other tests see the model as it was
        engine.sync_weights(model)


class RecordingEngine:
    """The HF engine, noting the policy's weights at every sync."""

    name = "recording"

    def __init__(self, model, tokenizer):
        self.inner = make_engine("hf", model, tokenizer, max_model_len=64)
        self.synced: list[dict[str, torch.Tensor]] = []

    def generate(self, prompts, settings):
        return self.inner.generate(prompts, settings)

    def sync_weights(self, model):
        self.synced.append({k: v.detach().clone() for k, v in model.state_dict().items()})


def test_trainer_syncs_its_engine_after_every_update(tmp_path):
    from hiper.trainer import TrainConfig, Trainer

    config = TrainConfig(env="alfworld", split="valid_unseen", data="sample", tiny_model=True, model=str(TOKENIZER),
                         envs=1, steps=2, max_turns=1, max_new_tokens=4, micro_batch_size=2, mini_batch_size=4,
                         run_dir=str(tmp_path / "run"), actor_lr=1e-3, save_every=0, engine="hf",
                         estimator="rloo", group_size=1, kl_coef=0.0)  # no critic, no reference: fast
    trainer = Trainer(config)
    trainer.engine = engine = RecordingEngine(trainer.actor, trainer.tokenizer)
    initial = {k: v.detach().clone() for k, v in trainer.actor.state_dict().items()}
    trainer.train(log=None)
    assert len(engine.synced) == 2  # once per update
    final = trainer.actor.state_dict()
    assert all(torch.equal(engine.synced[-1][k], v) for k, v in final.items())
    assert any(not torch.equal(engine.synced[0][k], initial[k]) for k in initial)  # synced after, not before


class LoadedPolicy:
    """A loaded policy as far as the commands look at it: with PEFT's LoRA attributes, or without."""

    def __init__(self, lora: bool):
        if lora:
            self.peft_config, self.disable_adapter = {}, lambda: None

    def to(self, device):
        return self


@pytest.fixture
def model_dir(tmp_path):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text("{}")
    return str(tmp_path / "model")


@pytest.mark.parametrize("installed", [False, True])
@pytest.mark.parametrize("lora", [False, True])
def test_eval_resolves_auto_by_the_rule(model_dir, monkeypatch, vllm_installed, installed, lora):
    import hiper.checkpoint
    import hiper.evaluate
    from hiper.cli import main

    vllm_installed(installed)
    monkeypatch.setattr(hiper.checkpoint, "load_policy", lambda *args, **kwargs: (LoadedPolicy(lora), None))
    engines = []
    monkeypatch.setattr(hiper.evaluate, "evaluate", lambda *args, engine, **kwargs: engines.append(engine) or {})
    assert main(["eval", "--checkpoint", model_dir, "--data", "sample", "--episodes", "1", "--device", "cpu"]) == 0
    assert engines == ["vllm" if installed and not lora else "hf"]


@pytest.mark.parametrize("installed", [False, True])
@pytest.mark.parametrize("lora", [False, True])
def test_rollout_resolves_auto_by_the_rule(model_dir, monkeypatch, vllm_installed, installed, lora):
    import contextlib
    from types import SimpleNamespace

    import hiper.envs
    import hiper.rollout
    from hiper.cli import main

    vllm_installed(installed)
    monkeypatch.setattr(models, "load", lambda *args, **kwargs: (LoadedPolicy(lora), None))
    monkeypatch.setattr(hiper.envs, "EnvPool", lambda *args, **kwargs: contextlib.nullcontext())
    engines = []

    def played(*args, engine, **kwargs):  # what the command prints of a rollout, of none
        engines.append(engine)
        batch = SimpleNamespace(num_rows=0, prompts=torch.zeros(0, 0), responses=torch.zeros(0, 0))
        return SimpleNamespace(run=lambda: SimpleNamespace(episodes=[], batch=batch, timings={}, success_rate=0.0))

    monkeypatch.setattr(hiper.rollout, "RolloutEngine", played)
    assert main(["rollout", "--model", model_dir, "--data", "sample", "--envs", "1", "--device", "cpu"]) == 0
    assert engines == ["vllm" if installed and not lora else "hf"]


def test_the_evaluation_inside_training_samples_with_the_training_engine(tmp_path, monkeypatch):
    import hiper.evaluate
    from hiper.trainer import TrainConfig, Trainer

    config = TrainConfig(env="alfworld", split="valid_unseen", data="sample", tiny_model=True, model=str(TOKENIZER),
                         envs=1, steps=1, max_turns=1, max_new_tokens=4, micro_batch_size=2, mini_batch_size=4,
                         run_dir=str(tmp_path / "run"), save_every=0, engine="hf", estimator="rloo", group_size=1,
                         kl_coef=0.0, eval_every=1, eval_envs=1, max_prompt_length=1500)
    trainer = Trainer(config)
    trainer.engine = RecordingEngine(trainer.actor, trainer.tokenizer)
    calls = []
    evaluate = hiper.evaluate.evaluate
    monkeypatch.setattr(hiper.evaluate, "evaluate", lambda *args, **kwargs: calls.append(kwargs) or evaluate(
        *args, **kwargs))
    (metrics,) = trainer.train(log=None)
    assert [(c["engine"], c["max_prompt_length"]) for c in calls] == [(trainer.engine, 1500)]
    assert metrics["eval"]["episodes"] == 1


def test_trainer_engine_setting():
    from hiper.trainer import TrainConfig

    assert TrainConfig().engine == "auto"
    with pytest.raises(ValueError, match="engine: expected one of auto, hf, vllm, got 'sglang'"):
        TrainConfig(engine="sglang")
    with pytest.raises(ValueError, match="engine: vllm does not serve LoRA policies yet"):
        TrainConfig(engine="vllm", lora_rank=4)


def test_rollout_and_eval_take_an_engine_flag():
    from hiper.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(["rollout", "--engine", "vllm"]).engine == "vllm"
    assert parser.parse_args(["rollout"]).engine == "auto"
    assert parser.parse_args(["eval", "--checkpoint", "runs/x", "--engine", "hf"]).engine == "hf"
    with pytest.raises(SystemExit):
        parser.parse_args(["rollout", "--engine", "sglang"])
