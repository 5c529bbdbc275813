"""`hiper bench variance`: the spread statistics, and a tiny end-to-end run on ALFWorld."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from hiper.cli import main
from hiper.studies.variance import bootstrap_interval, spread

TOKENIZER = str(Path(__file__).parent / "fixtures" / "smollm2_tokenizer")


def gram(g):
    return g @ g.T


def test_spread_of_known_gradients():
    same = np.tile([1.0, 2.0, 2.0], (4, 1))
    s = spread(gram(same))
    assert s["relative_variance"] == pytest.approx(0.0, abs=1e-12) and s["pairwise_cosine"] == pytest.approx(1.0)
    assert s["mean_norm"] == pytest.approx(3.0)
    # mean (1, 0), deviations +-(0, 1): tr Cov = 4 * 1 / 3, |mean|^2 = 1
    g = np.array([[1.0, 1.0], [1.0, -1.0], [1.0, 1.0], [1.0, -1.0]])
    s = spread(gram(g))
    assert s["relative_variance"] == pytest.approx(4 / 3)
    assert s["pairwise_cosine"] == pytest.approx((0 + 1 + 0 + 0 + 1 + 0) / 6)
    # A zero mean has no finite relative variance; the interval skips such resamples.
    assert spread(gram(np.array([[1.0, 0.0], [-1.0, 0.0]])))["relative_variance"] == float("inf")
    lo, hi = bootstrap_interval(gram(g), "relative_variance", 200, np.random.default_rng(0))
    assert 0 <= lo <= hi


def test_weighted_spread_equals_spread_of_the_repeated_rows():
    rng = np.random.default_rng(1)
    g = rng.normal(size=(4, 7))
    counts = np.array([2, 0, 1, 1])
    repeated = np.repeat(g, counts, axis=0)
    for key, value in spread(gram(g), counts).items():
        assert value == pytest.approx(spread(gram(repeated))[key]), key


def test_variance_bench_runs_on_alfworld(tmp_path, capsys):
    out = tmp_path / "variance"
    assert main(["bench", "variance", "--tiny", "--model", TOKENIZER, "--split", "valid_unseen", "--data", "sample", "--batches", "2",
                 "--envs", "2", "--group-size", "2", "--max-turns", "2", "--max-new-tokens", "6",
                 "--bootstrap", "50", "--out", str(out)]) == 0
    report = json.loads((out / "variance.json").read_text())
    assert set(report["table"]) == {"hae", "gae", "turn_gae", "grpo", "rloo", "gigpo"}
    assert len(report["batches"]) == 2 and all(b["rows"] >= 2 for b in report["batches"])
    # The tiny model's turns are all invalid and equally scored: the group baselines see no
    # difference inside a group and give exactly zero gradient; HAE (whole response credited
    # as the action when no tags are found) does not.
    assert report["table"]["grpo"]["zero_gradient_batches"] == 2
    assert report["table"]["hae"]["zero_gradient_batches"] == 0
    assert "tr Cov" in capsys.readouterr().out


def test_variance_bench_rejects_bad_arguments():
    with pytest.raises(SystemExit):
        main(["bench", "variance", "--tiny", "--estimators", "ppo"])
    with pytest.raises(SystemExit):
        main(["bench", "variance", "--tiny", "--batches", "1"])
