"""A LoRA checkpoint records its base model (hiper.lora_base) and refuses to load onto another."""
from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("peft")

from hiper import checkpoint, models  # noqa: E402
from hiper.lora_base import weights_sha256  # noqa: E402
from hiper.trainer import Trainer, TrainConfig  # noqa: E402

TOKENIZER = str(Path(__file__).parent / "fixtures" / "smollm2_tokenizer")


def lora_config(run_dir: Path, **overrides) -> TrainConfig:
    values = dict(env="keychest", tiny_model=True, model=TOKENIZER, device="cpu", envs=1, steps=1, max_turns=1,
                  max_new_tokens=4, micro_batch_size=1, mini_batch_size=4, estimator="grpo", lora_rank=2,
                  progress=False, run_dir=str(run_dir))
    return TrainConfig(**{**values, **overrides})


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A one-step LoRA run of the tiny model (seed 0)."""
    run_dir = tmp_path_factory.mktemp("lora") / "run"
    Trainer(lora_config(run_dir)).train(log=None)
    return run_dir


def test_the_checkpoint_records_its_base(run_dir):
    base = checkpoint.open_checkpoint(run_dir).training_state().base
    tokenizer = models.prepare_tokenizer(__import__("transformers").AutoTokenizer.from_pretrained(TOKENIZER))
    assert base["source"] == "tiny" and base["tiny_model"] == {"hidden_size": 64, "layers": 2, "heads": 4, "seed": 0}
    assert base["sha256"] == weights_sha256(models.tiny_random_model(tokenizer, seed=0))
    model, _ = checkpoint.load_policy(run_dir)  # onto its own base: loads
    assert models.is_lora(model)


def test_resuming_onto_another_seed_of_the_tiny_model_is_refused(run_dir):
    trainer = Trainer(lora_config(run_dir, seed=1, steps=2))
    with pytest.raises(ValueError, match=r"^checkpoint: its LoRA adapters were trained on the tiny model of width 64, "
                                         r"2 layers, 4 heads, seed 0 .* but the base rebuilt here is the tiny model "
                                         r"of width 64, 2 layers, 4 heads, seed 1"):
        trainer.load_checkpoint()


def test_loading_onto_another_width_is_refused(run_dir, monkeypatch):
    tiny = models.tiny_random_model
    monkeypatch.setattr(models, "tiny_random_model", lambda tokenizer, seed=0: tiny(tokenizer, hidden_size=32,
                                                                                    seed=seed))
    with pytest.raises(ValueError, match=r"^--checkpoint: its LoRA adapters were trained on the tiny model of width "
                                         r"64, .* the base rebuilt here is the tiny model of width 32"):
        checkpoint.load_policy(run_dir, argument="--checkpoint")
