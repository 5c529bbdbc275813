"""The C++ span masker and the verl mask drop-ins against the decode-and-search reference,
with two real tokenizer families: SmolLM2's byte-level BPE and a SentencePiece-style one."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from transformers import AutoTokenizer

import hiper
from hiper.format import format_turn
from hiper.integrations.verl import compute_value_mask, make_hae_masks_and_switch
from hiper.reference import masks_decode

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="module", params=["smollm2_tokenizer", "metaspace_tokenizer"])
def tokenizer(request):
    return AutoTokenizer.from_pretrained(FIXTURES / request.param)


def encode(tokenizer, texts, length=None, pad_id=0, cut=None):
    """Right-padded (N, L) ids and response mask; `cut` truncates responses (length limit)."""
    enc = [tokenizer(t, add_special_tokens=False)["input_ids"][:cut] for t in texts]
    length = length or max(1, max(len(e) for e in enc))
    ids = torch.full((len(enc), length), pad_id, dtype=torch.long)
    mask = torch.zeros(len(enc), length, dtype=torch.bool)
    for i, e in enumerate(enc):
        e = e[:length]
        ids[i, :len(e)] = torch.tensor(e, dtype=torch.long)
        mask[i, :len(e)] = True
    return ids, mask


GOLDEN = [
    format_turn("KEEP", "find the apple.", "go to countertop 1"),
    format_turn("SWITCH", "heat the mug", "open microwave 1]"),
    "<switch>switch</switch><subgoal>clean it).</subgoal><action>take knife 1)</action>\n",
    "<switch> keep </switch>\n<subgoal>x.</subgoal>\n<action>look.</action>\n<|im_end|>",
    "<switch>KEEP OR SWITCH</switch><subgoal>a</subgoal><action>b</action>",       # garbage decision
    "<switch></switch><subgoal></subgoal><action></action>",                      # empty blocks
    "<subgoal>no switch block</subgoal><action>go north</action>",                 # missing switch
    "<switch>SWITCH</switch><action>no subgoal</action>",                          # missing subgoal
    "<switch>KEEP</switch><subgoal>no action</subgoal> then some text",            # missing action
    "<switch>KEEP<switch>SWITCH</switch></switch><subgoal><subgoal>n</subgoal>",   # nested / repeated
    "<switch>SWITCH</switch><subgoal>one</subgoal><subgoal>two</subgoal><action>a</action><action>b</action>",
    "<switch>SWITCH<subgoal>unclosed <action>go",                                  # unclosed everything
    "</action><action>close before open</action>",
    "<switch>\u3000KEEP\u00a0</switch><subgoal>unicode ☕ 🍎 über</subgoal><action>put 🍎 in 柜子</action>",
    "<switch>SWITCH</switch>\n<subgoal>emoji at the end 😀</subgoal>\n<action>go to 😀]</action>\n",
    "plain text with no tags at all",
    "",
]


def check_against_reference(tokenizer, ids, mask, boundary=None, masker=None):
    masker = masker or hiper.SpanMasker(tokenizer)
    for include_tags in (False, True):
        got = masker(ids, mask, include_tags=include_tags)
        want = masks_decode.make_masks_and_switch(ids, mask, tokenizer, include_tags=include_tags)
        for name, g, w in zip(("action", "subgoal", "switch"), got[:3], want[:3]):
            assert torch.equal(g, w), f"{name} mask, include_tags={include_tags}"
        np.testing.assert_array_equal(got.is_new_subgoal.numpy(), want[3])
    boundary = torch.rand(ids.shape[0], generator=torch.Generator().manual_seed(0)) < 0.5 if boundary is None \
        else boundary
    got = masker(ids, mask, is_boundary=boundary, outputs=("value_mask_high", "value_mask_low", "value_mask_term"))
    want = masks_decode.value_masks(ids, mask, tokenizer, boundary.numpy())
    for name, g, w in zip(("high", "low", "term"), (got.value_mask_high, got.value_mask_low, got.value_mask_term),
                          want):
        assert torch.equal(g, w), f"value_mask_{name}"


def test_golden_cases(tokenizer):
    ids, mask = encode(tokenizer, GOLDEN)
    check_against_reference(tokenizer, ids, mask)


@pytest.mark.parametrize("cut", [3, 9, 17])
def test_responses_cut_at_the_length_limit(tokenizer, cut):
    ids, mask = encode(tokenizer, GOLDEN, cut=cut)
    check_against_reference(tokenizer, ids, mask)


def test_int32_ids_and_left_over_padding_ids(tokenizer):
    ids, mask = encode(tokenizer, GOLDEN, pad_id=len(tokenizer) + 1000)  # padding ids are never read
    check_against_reference(tokenizer, ids.to(torch.int32), mask)


def test_expected_spans_on_a_well_formed_turn():
    tok = AutoTokenizer.from_pretrained(FIXTURES / "smollm2_tokenizer")
    ids, mask = encode(tok, [format_turn("SWITCH", "find the apple.", "go to countertop 1")])
    m = hiper.SpanMasker(tok)(ids, mask)
    text = lambda sel: tok.decode(ids[0][sel[0]])  # noqa: E731
    assert text(m.subgoal_mask) == "find the apple"  # ".</subgoal>" is a close variant: "." stays out
    assert text(m.action_mask) == "go to countertop 1"
    assert text(m.switch_mask) == "SWITCH"
    assert bool(m.is_new_subgoal[0])
    with_tags = hiper.SpanMasker(tok)(ids, mask, include_tags=True)
    assert text(with_tags.switch_mask) == "<switch>SWITCH</switch>"
    assert text(with_tags.action_mask) == "<action>go to countertop 1</action>"


SOUP = ["<switch>", "</switch>", "<subgoal>", "</subgoal>", "<action>", "</action>", "KEEP", "keep", "SWITCH",
        " ", "\n", ".", "]", ")", "go to", "😀", "柜", "\u3000", "\u00a0", "<", ">", "/", "<|im_end|>", "ü", "\t"]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.lists(st.sampled_from(SOUP), max_size=14).map("".join), min_size=1, max_size=6))
def test_tag_soup_property(tokenizer, texts):
    ids, mask = encode(tokenizer, texts)
    check_against_reference(tokenizer, ids, mask)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.integers(0, 2**31 - 1))
def test_random_token_ids_property(tokenizer, seed):
    """Arbitrary id sequences (partial UTF-8, special tokens anywhere, tags split oddly)."""
    rng = np.random.default_rng(seed)
    tag_ids = tokenizer("<switch>KEEP</switch><subgoal>a.</subgoal><action>b]</action>\n",
                        add_special_tokens=False)["input_ids"]
    n, length = 5, 24
    pool = np.concatenate([rng.integers(0, len(tokenizer), size=64), np.repeat(tag_ids, 4)])
    ids = torch.from_numpy(rng.choice(pool, size=(n, length)))
    mask = torch.from_numpy(np.arange(length)[None] < rng.integers(0, length + 1, size=n)[:, None])
    check_against_reference(tokenizer, ids, mask)


def verl_batch(ids, mask, traj_uid, turn_idx, switch):
    return SimpleNamespace(batch={"responses": ids, "response_mask": mask.long()},
                           non_tensor_batch={"traj_uid": np.asarray(traj_uid, dtype=object),
                                             "turn_idx": np.asarray(turn_idx), "switch": np.asarray(switch)})


def test_verl_drop_ins(tokenizer):
    ids, mask = encode(tokenizer, GOLDEN)
    n = ids.shape[0]
    traj = [f"t{i % 3}" for i in range(n)]
    turn = [i // 3 for i in range(n)]
    switch = [i % 4 == 1 for i in range(n)]
    data = verl_batch(ids, mask, traj, turn, switch)
    for include in (False, True):
        got = make_hae_masks_and_switch(data, tokenizer, include_tags_mask=include)
        want = masks_decode.make_masks_and_switch(ids, mask, tokenizer, include_tags=include)
        for g, w in zip(got[:3], want[:3]):
            assert g.dtype == torch.bool and torch.equal(g, w)
        assert isinstance(got[3], np.ndarray) and got[3].dtype == bool
        np.testing.assert_array_equal(got[3], want[3])
    boundary = np.array([t == 0 for t in turn]) | np.array(switch)
    got = compute_value_mask(data, tokenizer)
    want = masks_decode.value_masks(ids, mask, tokenizer, boundary)
    for g, w in zip(got, want):
        assert torch.equal(g, w)


def test_segment_starts_with_duplicate_rows():
    """Padding by duplication repeats (traj, turn) rows; only the first copy of turn 0 starts a segment."""
    from hiper.masks import segment_starts

    starts = segment_starts(np.array(["a", "a", "b", "a", "b"], dtype=object), [1, 0, 0, 0, 0],
                            [False, False, False, False, True])
    np.testing.assert_array_equal(starts, [False, True, True, False, True])


def test_bad_input(tokenizer):
    masker = hiper.SpanMasker(tokenizer)
    ids, mask = encode(tokenizer, GOLDEN[:2])
    bad = ids.clone()
    bad[1, 2] = len(tokenizer) + 5
    with pytest.raises(ValueError, match=r"responses: token id \d+ at row 1, position 2 is outside the vocabulary"):
        masker(bad, mask)
    bad[1, 2] = -1
    with pytest.raises(ValueError, match="responses: token id -1"):
        masker(bad, mask)
    with pytest.raises(ValueError, match="response_mask: expected shape"):
        masker(ids, mask[:, :-1])
    with pytest.raises(TypeError, match="responses"):
        masker(ids.float(), mask)
    with pytest.raises(ValueError, match="is_boundary: required"):
        masker(ids, mask, outputs=("value_mask_high",))
    with pytest.raises(TypeError, match="tokenizer"):
        hiper.SpanMasker(object())


# ------------------------------------------------------------------ padded model vocabularies
PADDING = 64  # rows of a model's embedding past the tokenizer's last token


def with_padding_ids(tokenizer, ids, mask, rng):
    """Responses with ids from the padded range [len(tokenizer), len + PADDING) inserted
    between tokens (the text is unchanged) and written over some tokens (the text loses
    them), right-padded again: what a model with a padded embedding may sample."""
    size = len(tokenizer)
    rows = []
    for row, valid in zip(ids.tolist(), mask.sum(1).tolist()):
        out = []
        for tok in row[:valid]:
            if rng.random() < 0.2:
                out.append(int(rng.integers(size, size + PADDING)))  # inserted
            out.append(int(rng.integers(size, size + PADDING)) if rng.random() < 0.1 else tok)  # overwritten
        rows.append(out)
    length = max(1, max(len(r) for r in rows))
    new_ids = torch.zeros(len(rows), length, dtype=torch.long)
    new_mask = torch.zeros(len(rows), length, dtype=torch.bool)
    for i, r in enumerate(rows):
        new_ids[i, :len(r)] = torch.tensor(r, dtype=torch.long)
        new_mask[i, :len(r)] = True
    return new_ids, new_mask


def test_padded_vocabulary_ids_read_as_empty_text(tokenizer):
    """Models pad their embedding past the tokenizer (Qwen2.5: 151,936 rows for 151,665
    tokens) and can sample the padding ids. Below the model's vocab_size they are empty
    text, as decoding gives them, so the masks equal the decode-and-search reference's."""
    size = len(tokenizer)
    assert tokenizer.batch_decode([[size], [size + PADDING - 1]]) == ["", ""]  # what the reference reads
    masker = hiper.SpanMasker(tokenizer, vocab_size=size + PADDING)
    assert masker.vocab_size == size + PADDING
    assert masker._core.token_bytes(size) == b"" and masker._core.token_bytes(size + PADDING - 1) == b""
    assert masker._core.token_bytes(5) == hiper.SpanMasker(tokenizer)._core.token_bytes(5)
    ids, mask = with_padding_ids(tokenizer, *encode(tokenizer, GOLDEN), np.random.default_rng(0))
    assert (ids[mask] >= size).sum() > 10
    check_against_reference(tokenizer, ids, mask, masker=masker)
    check_against_reference(tokenizer, ids.to(torch.int32), mask, masker=masker)
    # The CUDA kernel's algorithm (the token-walking search, run on the host) reads the same
    # table the device copy is made from: padding ids are empty pieces there too.
    data, offsets, has_lt = masker._core.table()
    assert offsets.shape == (size + PADDING + 1,) and (np.diff(offsets[size:]) == 0).all() and not has_lt[size:].any()
    n, length = ids.shape
    boundary = np.arange(n) % 2 == 0
    host = masker(ids, mask, include_tags=True, is_boundary=boundary,
                  outputs=("action_mask", "subgoal_mask", "switch_mask", "is_new_subgoal", "value_mask_low"))
    walked = {name: np.empty((n, length), bool) for name in ("action_mask", "subgoal_mask", "switch_mask",
                                                            "value_mask_low")}
    walked["is_new_subgoal"] = np.empty(n, bool)
    masker._core.apply(ids.numpy(), mask.numpy(), True, boundary, **walked, by_tokens=True)
    for name, got in walked.items():
        np.testing.assert_array_equal(got, getattr(host, name).numpy(), err_msg=name)


def test_padded_vocabulary_refuses_ids_past_the_model(tokenizer):
    size = len(tokenizer)
    masker = hiper.SpanMasker(tokenizer, vocab_size=size + PADDING)
    ids, mask = encode(tokenizer, GOLDEN[:2])
    ids[0, 1] = size + PADDING - 1  # the last padding row: fine
    masker(ids, mask)
    ids[1, 2] = size + PADDING
    with pytest.raises(ValueError, match=rf"responses: token id {size + PADDING} at row 1, position 2 is outside "
                                         rf"the vocabulary \(size {size + PADDING}\)"):
        masker(ids, mask)
    # A vocab_size below the tokenizer's (a model that cannot produce its last tokens) cuts the table.
    small = hiper.SpanMasker(tokenizer, vocab_size=size - 1)
    ids, mask = encode(tokenizer, GOLDEN[:1])
    ids[0, 0] = size - 1
    with pytest.raises(ValueError, match="responses: token id"):
        small(ids, mask)


@pytest.mark.parametrize("value, error, match", [
    (0, ValueError, "vocab_size: expected a size in"),
    (-5, ValueError, "vocab_size"),
    (1 << 40, ValueError, "vocab_size"),
    (1.5e5, TypeError, "vocab_size: expected an int"),
    (True, TypeError, "vocab_size"),
    ("151936", TypeError, "vocab_size"),
])
def test_vocab_size_bad_values(value, error, match):
    tok = AutoTokenizer.from_pretrained(FIXTURES / "metaspace_tokenizer")
    with pytest.raises(error, match=match):
        hiper.SpanMasker(tok, vocab_size=value)


@pytest.mark.skipif(not (hiper.has_cuda() and torch.cuda.is_available()), reason="no CUDA device")
def test_padded_vocabulary_on_the_gpu(tokenizer):
    size = len(tokenizer)
    masker = hiper.SpanMasker(tokenizer, vocab_size=size + PADDING)
    ids, mask = with_padding_ids(tokenizer, *encode(tokenizer, GOLDEN), np.random.default_rng(1))
    boundary = torch.arange(ids.shape[0]) % 2 == 0
    outputs = ("action_mask", "subgoal_mask", "switch_mask", "is_new_subgoal", "value_mask_high", "value_mask_low",
               "value_mask_term")
    want = masker(ids, mask, include_tags=True, is_boundary=boundary, outputs=outputs)
    got = masker(ids.cuda(), mask.cuda(), include_tags=True, is_boundary=boundary.cuda(), outputs=outputs)
    for name in outputs:
        assert torch.equal(getattr(got, name).cpu(), getattr(want, name)), name
    ids[0, 0] = size + PADDING
    with pytest.raises(ValueError, match=rf"responses: token id {size + PADDING} at row 0, position 0"):
        masker(ids.cuda(), mask.cuda())


def test_trainer_masker_covers_the_models_padded_vocabulary(tmp_path):
    """The trainer builds its masker for the actor's vocabulary (config.vocab_size), not the
    tokenizer's: ids the model samples from its padded embedding rows read as empty text."""
    from hiper.models import prepare_tokenizer, tiny_random_model
    from hiper.trainer import Trainer, TrainConfig

    tok = prepare_tokenizer(AutoTokenizer.from_pretrained(FIXTURES / "smollm2_tokenizer"))
    model = tiny_random_model(tok, hidden_size=16, layers=1, heads=2)
    model.resize_token_embeddings(len(tok) + PADDING)  # as Qwen2.5's embedding is larger than its tokenizer
    config = TrainConfig(env="alfworld", split="valid_unseen", data="sample", envs=2, steps=1, max_turns=2,
                         estimator="grpo", kl_coef=0.0, device="cpu", run_dir=str(tmp_path / "run"))
    trainer = Trainer(config, model=model, tokenizer=tok)
    assert model.config.vocab_size == len(tok) + PADDING
    assert trainer.masker.vocab_size == len(tok) + PADDING
    ids, mask = encode(tok, GOLDEN[:2])
    ids[0, 1] = len(tok) + PADDING - 1
    trainer.masker(ids, mask)  # no error: a padding row of the model's embedding
