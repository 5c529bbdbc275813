import os
import sys
from pathlib import Path

import pytest

# Test helpers (batches.py) live beside the tests.
sys.path.insert(0, str(Path(__file__).parent))

# `precision auto` picks bf16 on a CPU that multiplies it natively (hiper.precision). The
# suite's numerics must not depend on the machine that runs it, so every test, and every
# command a test starts, sees a CPU without it unless the test says otherwise.
os.environ.setdefault("HIPER_CPU_BF16", "0")


@pytest.fixture
def no_model(monkeypatch):
    """Fails the test if a command gets as far as loading a model or building a Trainer."""
    import hiper.models
    import hiper.trainer

    def loaded(*args, **kwargs):
        pytest.fail("a model was loaded")

    monkeypatch.setattr(hiper.models, "load", loaded)
    monkeypatch.setattr(hiper.models, "tiny_random_model", loaded)
    monkeypatch.setattr(hiper.trainer, "Trainer", loaded)
    monkeypatch.delenv("HIPER_DEBUG", raising=False)


@pytest.fixture(autouse=True)
def registry_as_it_was():
    """Families a test registers (register(...), or --env module:attribute) are forgotten after it,
    so that no test sees another's: error messages list the registered families."""
    from hiper.envs import registry

    before = dict(registry.FAMILIES)
    yield
    registry.FAMILIES.clear()
    registry.FAMILIES.update(before)
