"""The CPU loops' thread pool (csrc/cpu/parallel.h) and its settings: results do not depend
on the thread count or on which thread ran which rows, loops below the grain stay serial,
the settings round-trip and refuse bad values. Nothing here measures time."""
from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from transformers import AutoTokenizer

import hiper
from hiper import _C
from hiper.synthetic import synthetic_rollout_batch

from test_masks import FIXTURES, GOLDEN, encode


@pytest.fixture(autouse=True)
def restore_settings():
    torch_threads = torch.get_num_threads()
    yield
    hiper.set_num_threads(None)
    _C.set_parallel_grain(None)
    torch.set_num_threads(torch_threads)


def force_parallel(threads: int) -> None:
    """Every loop takes the parallel path with `threads` threads, on these small inputs too."""
    _C.set_parallel_grain(0)
    hiper.set_num_threads(threads)


def every_loop(masker, ids, mask, batch):
    """One call of each op whose launcher runs a parallel loop, as plain numpy arrays."""
    meta = batch.non_tensor_batch
    traj = np.unique(meta["traj_uid"], return_inverse=True)[1].astype(np.int64)
    turn = meta["turn_idx"].astype(np.int64)
    rewards = meta["rewards"].astype(np.float32)
    dones = meta["dones"].astype(bool)
    resp = batch.batch["response_mask"].bool()
    values = batch.batch["value_low"].float()
    layout = hiper.build_layout(traj, turn, meta["switch"])
    turns = hiper.hae_turns(layout, rewards, dones, rewards, rewards, rewards, gamma=0.9, lam_seg=0.8)
    tokens = hiper.hae_token_outputs(turns, resp, action_mask=batch.action_mask, subgoal_mask=batch.subgoal_mask,
                                     switch_mask=batch.switch_mask)
    spans = masker(ids, mask, include_tags=True, is_boundary=np.ones(ids.shape[0], bool),
                   outputs=("action_mask", "subgoal_mask", "switch_mask", "is_new_subgoal", "value_mask_high",
                            "value_mask_low", "value_mask_term"))
    out = {f"spans.{k}": np.asarray(v) for k, v in spans._asdict().items()}
    out.update({f"turns.{k}": np.asarray(v) for k, v in turns._asdict().items()})
    out.update({f"tokens.{k}": np.asarray(v) for k, v in tokens._asdict().items() if v is not None})
    token_rewards = hiper.last_token_scores(rewards, resp)
    out["token_gae"] = np.asarray(hiper.token_gae(token_rewards, values, resp, lam=0.9).advantages)
    out["turn_gae"] = np.asarray(hiper.turn_gae(layout, rewards, dones, rewards, gamma=0.9).advantages)
    out["episode_returns"] = np.asarray(hiper.episode_returns(layout, rewards))
    out["shaped"] = np.asarray(hiper.shape_rewards(layout, rewards, is_new_subgoal=meta["switch"], keep_penalty=-0.3))
    return out


@pytest.fixture(scope="module")
def inputs():
    tok = AutoTokenizer.from_pretrained(FIXTURES / "smollm2_tokenizer")
    ids, mask = encode(tok, GOLDEN * 7)
    return hiper.SpanMasker(tok), ids, mask, synthetic_rollout_batch(12, max_turns=9, length=40, seed=5)


@pytest.mark.parametrize("threads", [2, 3, 8])
def test_results_do_not_depend_on_threads(inputs, threads):
    hiper.set_num_threads(1)
    serial = every_loop(*inputs)
    force_parallel(threads)
    for _ in range(3):  # workers join at different moments each time
        parallel = every_loop(*inputs)
        assert serial.keys() == parallel.keys()
        for name, want in serial.items():
            np.testing.assert_array_equal(parallel[name], want, err_msg=name)


def test_concurrent_callers_and_loops_get_their_own_results(inputs):
    """Loops started from several Python threads at once (the GIL is released inside):
    one has the pool, the others run on their own threads; all results stay right."""
    masker, ids, mask, batch = inputs
    hiper.set_num_threads(1)
    serial = every_loop(*inputs)
    force_parallel(4)
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda _: every_loop(masker, ids, mask, batch), range(8)))
    for parallel in results:
        for name, want in serial.items():
            np.testing.assert_array_equal(parallel[name], want, err_msg=name)


def test_loops_below_the_grain_stay_on_the_caller():
    hiper.set_num_threads(4)
    grain = _C.get_parallel_grain()
    assert grain == 1 << 16
    assert _C.loop_threads(1000, grain - 1) == 1
    assert _C.loop_threads(1000, grain) == 4
    assert _C.loop_threads(3, 10 * grain) == 3  # never more threads than items
    assert _C.loop_threads(1, 10 * grain) == 1
    hiper.set_num_threads(1)
    assert _C.loop_threads(1000, 10 * grain) == 1
    _C.set_parallel_grain(10)
    hiper.set_num_threads(2)
    assert _C.loop_threads(5, 9) == 1 and _C.loop_threads(5, 10) == 2
    _C.set_parallel_grain(None)
    assert _C.get_parallel_grain() == grain
    with pytest.raises(ValueError, match="grain"):
        _C.set_parallel_grain(-1)


def test_thread_count_round_trips_and_follows_torch():
    hiper.set_num_threads(3)
    assert hiper.get_num_threads() == 3
    torch.set_num_threads(1)
    assert hiper.get_num_threads() == 3  # an explicit count wins over torch's
    hiper.set_num_threads(None)
    assert hiper.get_num_threads() == 1  # the default follows torch.get_num_threads()
    torch.set_num_threads(2)
    assert hiper.get_num_threads() == 2
    hiper.set_num_threads(np.int64(5))
    assert hiper.get_num_threads() == 5


@pytest.mark.parametrize("value, error", [(0, ValueError), (-2, ValueError), (1025, ValueError), (2.0, TypeError),
                                          ("2", TypeError), (True, TypeError)])
def test_bad_thread_counts_are_refused(value, error):
    hiper.set_num_threads(2)
    with pytest.raises(error, match="^n: expected"):
        hiper.set_num_threads(value)
    assert hiper.get_num_threads() == 2


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="needs sched_getaffinity")
def test_default_without_torch_is_the_available_cpus():
    proc = run_python("import sys, hiper; hiper.set_num_threads(7); hiper.set_num_threads(None); "
                      "print('torch' in sys.modules, hiper.get_num_threads())")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["False", str(len(os.sched_getaffinity(0)))]


def run_python(code: str, **env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **env})


def test_environment_variable_sets_the_count(monkeypatch):
    proc = run_python("import hiper, torch; torch.set_num_threads(1); print(hiper.get_num_threads())",
                      HIPER_NUM_THREADS="3")  # applied when hiper is imported
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["3"]
    from hiper.threads import apply_environment

    monkeypatch.setenv("HIPER_NUM_THREADS", " 5 ")
    apply_environment()
    assert hiper.get_num_threads() == 5
    for bad in ("zero", "0", "2.5", "2000"):
        monkeypatch.setenv("HIPER_NUM_THREADS", bad)
        with pytest.raises(ValueError, match="^HIPER_NUM_THREADS: expected a thread count"):
            apply_environment()
    assert hiper.get_num_threads() == 5


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_forked_child_runs_parallel_loops():
    """A child forked after the pool started has none of its threads; its loops still run."""
    code = """
import os, numpy as np, hiper
from hiper import _C
_C.set_parallel_grain(0)
hiper.set_num_threads(3)
x = np.arange(4000, dtype=np.float32).reshape(400, 10)
m = np.ones((400, 10), bool)
want = hiper.token_gae(x, x, m, lam=0.5).advantages
pid = os.fork()
if pid == 0:
    got = hiper.token_gae(x, x, m, lam=0.5).advantages
    os._exit(0 if np.array_equal(got, want) else 1)
_, status = os.waitpid(pid, 0)
print(os.waitstatus_to_exitcode(status))
"""
    proc = run_python(code)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["0"]
