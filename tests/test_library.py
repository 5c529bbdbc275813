"""torch.ops.hiper.*: every op passes torch.library.opcheck, traces under torch.compile,
and agrees with the Python API."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import hiper
import hiper.library as lib

TOKENIZER = Path(__file__).parent / "fixtures" / "smollm2_tokenizer"


def turn_rows(seed=0, num_traj=5, max_turns=6):
    rng = np.random.default_rng(seed)
    traj, turn = [], []
    for t in range(num_traj):
        T = int(rng.integers(1, max_turns + 1))
        traj += [t] * T
        turn += list(range(T))
    perm = rng.permutation(len(traj))
    n = len(traj)
    f = lambda: torch.as_tensor(rng.normal(size=n).astype(np.float32))  # noqa: E731
    return dict(traj=torch.as_tensor(np.asarray(traj)[perm]), turn=torch.as_tensor(np.asarray(turn)[perm]),
                switch=torch.as_tensor(rng.random(n) < 0.4), done=torch.as_tensor(rng.random(n) < 0.3),
                valid=torch.as_tensor(rng.random(n) < 0.8), rewards=f(), v_low=f(), v_high=f(), v_term=f())


def token_rows(n, length=10, seed=1):
    rng = np.random.default_rng(seed)
    resp = torch.as_tensor(np.arange(length)[None, :] < rng.integers(1, length + 1, size=n)[:, None])
    span = lambda: torch.as_tensor(rng.random((n, length)) < 0.3) & resp  # noqa: E731
    return resp, span


def op_cases():
    d = turn_rows()
    n = d["traj"].shape[0]
    resp, span = token_rows(n)
    turns = hiper.hae(d["traj"], d["turn"], d["rewards"], d["done"], d["v_low"], d["v_high"], d["v_term"],
                      is_new_subgoal=d["switch"])
    vals = torch.randn(n, resp.shape[1])
    scores = torch.randn(n)
    groups = d["traj"] // 2
    tokens = torch.randint(0, 50, (n, resp.shape[1]))
    masker = lib.masker_handle(hiper.SpanMasker(__import__("transformers").AutoTokenizer.from_pretrained(TOKENIZER)))
    return {
        "build_layout": (d["traj"], d["turn"], d["switch"]),
        "shape_rewards": (d["traj"], d["turn"], d["rewards"], d["switch"], d["valid"].float(), d["done"], -0.3,
                          "normalized", 0.1, -0.3),
        "hae_turns": (d["traj"], d["turn"], d["switch"], d["rewards"], d["done"], d["v_low"], d["v_high"],
                      d["v_term"], 0.99, 0.95, 0.9, True),
        "hae": (d["traj"], d["turn"], d["rewards"], d["done"], d["v_low"], d["v_high"], None, d["switch"], None, None,
                1.0, 1.0, 0.95, True, False, -0.3, "fixed", 0.1, 0.0),
        "normalize_advantages": (d["rewards"], d["valid"], 1e-8),
        "subgoal_changed": (d["traj"], d["turn"], tokens, span(), resp, True),
        "row_scan": (resp, span(), span(), span(), span(), span(), span(), vals, None, vals),
        "hae_token_outputs": (*turns, resp, span(), span(), span(), span(), span(), span(), True, False, True),
        "span_masks": (masker, tokens, resp, True, d["switch"]),
        "turn_gae": (d["traj"], d["turn"], d["rewards"], d["done"], d["v_low"], 0.99, 0.95, True),
        "token_gae": (vals, torch.randn_like(vals), resp, 1.0, 0.9),
        "masked_whiten": (vals, resp, 1e-8),
        "episode_returns": (d["traj"], d["turn"], d["rewards"]),
        "group_advantages": (scores, groups, "grpo", None, 1e-6),
        "gigpo_advantages": (d["traj"], d["turn"], scores, d["rewards"], d["done"], groups, d["turn"] % 3, 0.95, 1.0,
                             "mean_norm", 1e-6, 0.1 * (~d["valid"].bool()).float()),
    }


CASES = op_cases()


def test_every_op_has_a_case():
    assert {op._name for op in lib.OPS} == set(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_opcheck(name):
    op = getattr(torch.ops.hiper, name).default
    torch.library.opcheck(op, CASES[name])


# The ops with a CUDA path (the HAE pipeline); the others refuse CUDA tensors with a clear error.
CUDA_OPS = ("build_layout", "shape_rewards", "hae_turns", "hae", "normalize_advantages", "subgoal_changed",
            "row_scan", "hae_token_outputs")


@pytest.mark.skipif(not hiper.has_cuda(), reason="no CUDA device (CUDA path untested here)")
@pytest.mark.parametrize("name", CUDA_OPS)
def test_opcheck_on_cuda(name):
    args = tuple(a.cuda() if isinstance(a, torch.Tensor) else a for a in CASES[name])
    op = getattr(torch.ops.hiper, name).default
    torch.library.opcheck(op, args)
    for got, want in zip(op(*args), op(*CASES[name])):
        assert got.device.type == "cuda"
        torch.testing.assert_close(got.cpu(), want, rtol=1e-6, atol=1e-6)


def test_ops_match_the_python_api():
    d = turn_rows(seed=3)
    layout = hiper.build_layout(d["traj"], d["turn"], d["switch"])
    want = hiper.hae_turns(layout, d["rewards"], d["done"], d["v_low"], d["v_high"], d["v_term"], gamma=0.9,
                           bootstrap_truncated=True)
    got = torch.ops.hiper.hae_turns(d["traj"], d["turn"], d["switch"], d["rewards"], d["done"], d["v_low"],
                                    d["v_high"], d["v_term"], 0.9, 1.0, 0.95, True)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    order = torch.ops.hiper.build_layout(d["traj"], d["turn"], d["switch"])[0]
    np.testing.assert_array_equal(order.numpy(), layout.order)
    # GiGPO with the authors' invalid-action penalty on the step part.
    args = CASES["gigpo_advantages"]
    traj, turn, scores, rewards, dones, groups, anchors, *_, penalty = args
    assert penalty.any()
    want = hiper.gigpo_advantages(hiper.build_layout(traj, turn), scores, rewards, dones, groups, anchors, gamma=0.95,
                                  step_penalty=penalty)
    torch.testing.assert_close(torch.ops.hiper.gigpo_advantages(*args), torch.as_tensor(want), rtol=0, atol=0)
    assert not torch.equal(torch.ops.hiper.gigpo_advantages(*args[:-1]), torch.ops.hiper.gigpo_advantages(*args))


def test_compiled_graph_equals_eager():
    d = turn_rows(seed=4)
    n = d["traj"].shape[0]
    resp, span = token_rows(n)
    vals = torch.randn(n, resp.shape[1])

    def advantages(traj, turn, rewards, dones, values, resp):
        score = torch.ops.hiper.episode_returns(traj, turn, rewards) * 2.0
        adv, ret = torch.ops.hiper.turn_gae(traj, turn, score, dones, values[:, 0].contiguous(), 1.0, 0.95, False)
        tok_adv, _ = torch.ops.hiper.token_gae(values * resp, values, resp, 1.0, 1.0)
        return adv.unsqueeze(1) * resp + torch.ops.hiper.masked_whiten(tok_adv, resp, 1e-8)

    args = (d["traj"], d["turn"], d["rewards"], d["done"], vals, resp)
    torch._dynamo.reset()
    compiled = torch.compile(advantages, fullgraph=True, backend="aot_eager")
    torch.testing.assert_close(compiled(*args), advantages(*args))


def test_dlpack_producers_are_read_without_copies():
    class Producer:  # any object speaking the DLPack protocol
        def __init__(self, array):
            self.array = array

        def __dlpack__(self, **kwargs):
            return self.array.__dlpack__(**kwargs)

        def __dlpack_device__(self):
            return self.array.__dlpack_device__()

    from hiper._arrays import FLOAT32, to_numpy

    base = np.arange(6, dtype=np.float32)
    view = to_numpy(Producer(base), "x", FLOAT32, ndim=1)
    assert np.shares_memory(view, base)
    layout = hiper.build_layout(Producer(np.array([0, 0, 1])), Producer(np.array([0, 1, 0])))
    out = hiper.turn_gae(layout, Producer(np.array([1, 2, 3], np.float32)), Producer(np.array([0, 1, 1], bool)))
    np.testing.assert_allclose(out.returns, [3, 2, 3])


def test_span_masks_rejects_an_unknown_handle():
    with pytest.raises(ValueError, match="masker"):
        torch.ops.hiper.span_masks(10**6, torch.zeros(1, 2, dtype=torch.long), torch.ones(1, 2, dtype=torch.bool),
                                   True, None)
