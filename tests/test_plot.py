"""Learning curves: integer step ticks, plain tick labels, the run's name, constant series."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytest.importorskip("matplotlib")

from hiper.plot import learning_curves  # noqa: E402


def write_run(run, rows):
    run.mkdir(parents=True)
    (run / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")


@pytest.fixture
def three_steps(tmp_path):
    """Three steps: a constant loss, a constant return of 0, and a policy loss whose changes
    are 1e-4 of its size (matplotlib's default labels it `1e-9+1.234e-5`)."""
    run = tmp_path / "demo-run"
    write_run(run, [{"step": s, "success_rate": 0.0, "episode_return": 0.0, "switch_rate": 0.25, "invalid_rate": 1.0,
                     "critic_loss": 0.5625, "pg_loss": 1.2345e-5 + s * 1e-9} for s in (1, 2, 3)])
    return run


def drawn(run):
    fig = learning_curves(run)
    fig.canvas.draw()  # tick labels and offsets are computed at draw time
    return fig, {ax.get_title(): ax for ax in fig.axes}


def test_steps_are_integer_ticks_and_no_axis_has_offset_text(three_steps):
    fig, axes = drawn(three_steps)
    assert len(axes) == 6
    for title, ax in axes.items():
        lo, hi = ax.get_xlim()
        shown = [t for t in ax.get_xticks() if lo <= t <= hi]
        assert shown and all(float(t).is_integer() for t in shown), (title, shown)
        for axis in (ax.xaxis, ax.yaxis):
            assert axis.get_major_formatter().get_offset() == "", title
    labels = [t.get_text() for t in axes["policy loss"].get_yticklabels()]
    assert all(label.startswith("0.00001234") for label in labels), labels  # the whole value in every label


def test_the_title_names_the_run_and_constant_series_get_a_symmetric_margin(three_steps):
    fig, axes = drawn(three_steps)
    assert fig._suptitle.get_text() == "demo-run: 3 step(s)"
    assert axes["critic loss"].get_ylim() == pytest.approx((0.5625 - 0.05, 0.5625 + 0.05))
    assert axes["episode return"].get_ylim() == pytest.approx((-0.05, 0.05))
    assert axes["success rate"].get_ylim() == pytest.approx((-0.05, 1.05))  # rates keep their 0..1 range


def test_hiper_plot_writes_the_png(three_steps):
    done = subprocess.run([sys.executable, "-m", "hiper", "plot", str(three_steps)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(three_steps / "curves.png")
    assert (three_steps / "curves.png").stat().st_size > 1000


def test_a_run_without_metrics_is_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="run_dir: no metrics.jsonl"):
        learning_curves(tmp_path)


def test_a_last_line_cut_short_by_a_crash_is_left_out_and_a_bad_line_elsewhere_named(three_steps):
    from hiper.plot import read_metrics

    metrics = three_steps / "metrics.jsonl"
    whole = metrics.read_text()
    metrics.write_text(whole + '{"step": 4, "success_ra')
    assert [row["step"] for row in read_metrics(three_steps)] == [1, 2, 3]
    assert learning_curves(three_steps).axes  # and the plot is drawn from the whole rows
    metrics.write_text('{"step": 1, "succ\n' + whole)
    with pytest.raises(ValueError, match=r"run_dir: line 1 of .*metrics.jsonl is not JSON"):
        read_metrics(three_steps)


def evaluated_run(run, successes, steps=(0, 5, 10)):
    write_run(run, [{"step": s, "success_rate": 0.5, "eval": {"success_rate": v}} for s, v in zip(steps, successes)])
    return str(run)


def test_compare_draws_the_mean_over_seeds_and_their_range(tmp_path):
    from hiper.plot import comparison

    hae = [evaluated_run(tmp_path / "hae-0", [0.2, 0.6, 0.8]), evaluated_run(tmp_path / "hae-1", [0.4, 0.8, 1.0])]
    grpo = [evaluated_run(tmp_path / "grpo-0", [0.3, 0.3, 0.5])]
    fig = comparison({"hae": hae, "grpo": grpo})
    (ax,) = fig.axes
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert list(lines) == ["hae (mean of 2)", "grpo (mean of 1)"]
    assert list(lines["hae (mean of 2)"].get_xdata()) == [0, 5, 10]
    assert lines["hae (mean of 2)"].get_ydata() == pytest.approx([0.3, 0.7, 0.9])
    band = ax.collections[0].get_paths()[0].vertices  # the hae band: min at the bottom, max on top
    assert band[:, 1].min() == pytest.approx(0.2) and band[:, 1].max() == pytest.approx(1.0)


def test_compare_refuses_runs_evaluated_at_different_steps_or_not_at_all(tmp_path):
    from hiper.plot import comparison

    a = evaluated_run(tmp_path / "a", [0.1, 0.2, 0.3])
    b = evaluated_run(tmp_path / "b", [0.1, 0.2], steps=(0, 4))
    with pytest.raises(ValueError, match="evaluated at different steps"):
        comparison({"hae": [a, b]})
    write_run(tmp_path / "c", [{"step": 1, "success_rate": 0.0}])
    with pytest.raises(ValueError, match="holds no evaluations"):
        comparison({"hae": [str(tmp_path / "c")]})


def test_hiper_plot_compare_writes_the_png_and_needs_out(tmp_path):
    a = evaluated_run(tmp_path / "a", [0.1, 0.2, 0.3])
    out = tmp_path / "cmp.png"
    done = subprocess.run([sys.executable, "-m", "hiper", "plot", "--compare", f"hae={a}", "--out", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert out.stat().st_size > 1000
    done = subprocess.run([sys.executable, "-m", "hiper", "plot", "--compare", f"hae={a}"], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 1 and done.stderr.strip().splitlines()[-1].startswith("hiper: error: --compare:")
