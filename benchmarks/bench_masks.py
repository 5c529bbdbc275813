"""Span-mask benchmark: the C++ masker vs the decode-and-search reference.

3,500 responses of up to 512 tokens (well-formed Plan-Execute turns and malformed ones)
tokenised with SmolLM2's tokenizer; both produce the authors' two outputs (span masks with
the switch decision, and the value masks). Timed side by side in one process, after checking
that the masks are identical, next to the floor: allocating and writing the six (N, L) bool
outputs. Also times building the masker from the tokenizer.

    python benchmarks/bench_masks.py [--responses 3500] [--reference-responses 3500]
    python benchmarks/bench_masks.py --device cuda     # the CUDA masker on the same batch

On a GPU (--device cuda) the batch's tensors live on the device and the CUDA masker
(csrc/cuda/span_masker.cu) is timed with CUDA events, with and without its check of the
token ids (validate=True reads one number back), against what a GPU trainer does without
it (copy the ids to the host, run the C++ masker, copy the masks back; there is no GPU
twin of the decode-and-search reference, which is host Python by nature), and its
bandwidth (bytes read and written) against a device-to-device copy of its output bytes.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from transformers import AutoTokenizer

import hiper
from hiper.format import format_turn
from hiper.reference import masks_decode
from timing import cuda_median_ms, median_ms  # benchmarks/timing.py

TOKENIZER = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "smollm2_tokenizer"
WORDS = ("go to the countertop open drawer take apple from cabinet heat mug with microwave clean knife in "
         "sinkbasin put it on the shelf look around examine the fridge 1 2 3 then").split()


def sentence(rng, n):
    return " ".join(rng.choice(WORDS, size=n))


def make_responses(rng, count):
    """Well-formed turns (70%) and malformed ones, with filler text to reach long lengths."""
    out = []
    for _ in range(count):
        kind = rng.random()
        turn = format_turn(rng.choice(["KEEP", "SWITCH", "keep"]), sentence(rng, rng.integers(2, 12)) + ".",
                           sentence(rng, rng.integers(2, 8)) + rng.choice(["", "]", ")"]))
        if kind < 0.7:
            text = turn
        elif kind < 0.8:
            text = turn.replace("<action>", "")                     # missing action block
        elif kind < 0.9:
            text = turn.replace("KEEP", "KEEP OR SWITCH")           # garbage decision
        else:
            text = sentence(rng, 20) + " " + turn[: len(turn) // 2]   # stray text, cut off
        if rng.random() < 0.3:
            text += " " + sentence(rng, rng.integers(20, 400))      # long tails, up to the limit
        out.append(text + "<|im_end|>")
    return out


def large_vocab_tokenizer(size: int):
    """A byte-level BPE tokenizer with `size` tokens (SmolLM2's vocabulary plus generated
    byte strings, no merges): only its size matters, for timing how long the masker takes
    to read a vocabulary as large as Qwen2.5's (151k)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    base = AutoTokenizer.from_pretrained(TOKENIZER).get_vocab()
    vocab = dict(base)
    alphabet = sorted({ch for token in base for ch in token})
    rng = np.random.default_rng(1)
    while len(vocab) < size:
        vocab.setdefault("".join(rng.choice(alphabet, size=int(rng.integers(2, 12)))), len(vocab))
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(tokenizer_object=tok)




OUTPUTS = ("action_mask", "subgoal_mask", "switch_mask", "is_new_subgoal", "value_mask_high", "value_mask_low",
           "value_mask_term")


def make_batch(tok, responses: int, length: int):
    """(ids, response_mask, is_boundary, rng) of `responses` tokenised turns, right-padded to `length`."""
    rng = np.random.default_rng(0)
    enc = tok(make_responses(rng, responses), add_special_tokens=False, truncation=True,
              max_length=length)["input_ids"]
    n = len(enc)
    ids = torch.full((n, length), tok.pad_token_id or 0, dtype=torch.long)
    mask = torch.zeros(n, length, dtype=torch.bool)
    for i, e in enumerate(enc):
        ids[i, :len(e)] = torch.tensor(e)
        mask[i, :len(e)] = True
    boundary = torch.from_numpy(rng.random(n) < 0.5)
    return ids, mask, boundary, rng


def bench_cuda(masker, ids, mask, boundary, repeats: int, device: str = "cuda", timer=cuda_median_ms):
    """Rows of (name, ms, note): the CUDA masker on device tensors (every output, include_tags)
    against the host masker with the copies a GPU trainer needs without it, and against a
    device-to-device copy of the bytes it reads and writes. The masks are checked equal to
    the host masker's first. (device="cpu" with timer=median_ms runs the same table on the
    host, to check the script without a GPU.)"""
    dev = torch.device(device)
    n, length = ids.shape
    d_ids, d_mask, d_boundary = ids.to(dev), mask.to(dev), boundary.to(dev)

    def ours(validate=True):
        return masker(d_ids, d_mask, include_tags=True, is_boundary=d_boundary, outputs=OUTPUTS, validate=validate)

    def round_trip():  # what verl's drop-ins did before the CUDA masker: masks made on the host
        m = masker(d_ids.cpu(), d_mask.cpu(), include_tags=True, is_boundary=d_boundary.cpu(), outputs=OUTPUTS)
        return [x.to(dev) for x in m]

    host = masker(ids, mask, include_tags=True, is_boundary=boundary, outputs=OUTPUTS)
    got = ours()
    same = all(torch.equal(getattr(got, k).cpu(), getattr(host, k)) for k in OUTPUTS)
    again = ours(validate=False)
    same &= all(torch.equal(getattr(got, k), getattr(again, k)) for k in OUTPUTS)  # deterministic

    read = n * length * (ids.element_size() + 1) + n     # ids, response mask, is_boundary
    written = n * length * 6 + n                           # six (N, L) masks and is_new_subgoal
    src = torch.empty(written, dtype=torch.uint8, device=dev)  # the floor: copying the output bytes
    dst = torch.empty_like(src)
    t = {
        "ours": timer(ours, repeats),
        "ours_async": timer(lambda: ours(validate=False), repeats),
        "round_trip": timer(round_trip, max(3, repeats // 4)),
        "host": timer(lambda: masker(ids, mask, include_tags=True, is_boundary=boundary, outputs=OUTPUTS),
                      max(3, repeats // 4)),
        "copy": timer(lambda: dst.copy_(src), repeats),
    }
    gbs = lambda nbytes, ms: nbytes / ms / 1e6  # noqa: E731 - GB/s
    copy_bw = gbs(2 * written, t["copy"])  # a copy reads and writes every byte
    ours_bw = gbs(read + written, t["ours_async"])
    return same, [
        ("CUDA masker, ids checked (validate=True)", t["ours"],
         f"{t['round_trip'] / t['ours']:6.1f}x faster than the host round trip"),
        ("CUDA masker, validate=False (nothing waits)", t["ours_async"],
         f"{ours_bw:6.0f} GB/s read+written = {ours_bw / copy_bw:4.0%} of the copy's; "
         f"writes at {t['copy'] / t['ours_async']:4.0%} of the copy's speed"),
        ("host masker with copies: ids to host, masks back", t["round_trip"], ""),
        ("host masker alone (host tensors)", t["host"], ""),
        ("floor: device copy of the output bytes", t["copy"], f"{copy_bw:6.0f} GB/s read+written"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--responses", type=int, default=3500)
    parser.add_argument("--reference-responses", type=int, default=3500,
                        help="responses the slow reference is timed on (its time is scaled to --responses)")
    parser.add_argument("--length", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    args = parser.parse_args()

    tok = AutoTokenizer.from_pretrained(TOKENIZER)
    ids, mask, boundary, rng = make_batch(tok, args.responses, args.length)
    n, length = ids.shape
    lengths = mask.sum(1).float()
    if args.device == "cuda":
        if not (hiper.has_cuda() and torch.cuda.is_available()):
            raise SystemExit("--device cuda: this build of hiper or this torch has no usable CUDA device")
        masker = hiper.SpanMasker(tok)
        same, rows = bench_cuda(masker, ids, mask, boundary, args.repeats)
        print(f"hiper {hiper.__version__}, torch {torch.__version__}, {torch.cuda.get_device_name()}; "
              f"SmolLM2 tokenizer ({len(tok)} tokens); median time in ms (CUDA events)")
        print(f"{n} responses x {length} tokens (mean {lengths.mean():.0f}, max {lengths.max():.0f} valid); "
              f"CUDA masks identical to the host masker's (and run to run): {same}\n")
        for name, ms, note in rows:
            print(f"{name:52s} {ms:9.3f}  {note}")
        if not same:
            raise SystemExit("error: the CUDA masker and the host masker disagree")
        return

    build_ms = median_ms(lambda: hiper.SpanMasker(tok), 5)
    big = large_vocab_tokenizer(151_000)
    build_big_ms = median_ms(lambda: hiper.SpanMasker(big), 3)
    masker = hiper.SpanMasker(tok)
    outputs = ("action_mask", "subgoal_mask", "switch_mask", "is_new_subgoal", "value_mask_high", "value_mask_low",
               "value_mask_term")

    def ours():
        return masker(ids, mask, include_tags=True, is_boundary=boundary, outputs=outputs)

    m = args.reference_responses
    t0 = time.perf_counter()
    ref_masks = masks_decode.make_masks_and_switch(ids[:m], mask[:m], tok, include_tags=True)
    ref_values = masks_decode.value_masks(ids[:m], mask[:m], tok, boundary[:m].numpy())
    ref_ms = (time.perf_counter() - t0) * 1e3 * n / m
    got = ours()
    same = all(torch.equal(a[:m], b) for a, b in zip(got[:3], ref_masks[:3]))
    same &= bool(np.array_equal(got.is_new_subgoal[:m].numpy(), ref_masks[3]))
    same &= all(torch.equal(a[:m], b) for a, b in zip(got[4:], ref_values))

    holder = {}

    def floor():
        holder["x"] = [torch.empty(n, length, dtype=torch.bool).fill_(True) for _ in range(6)]

    ours_ms = median_ms(ours, args.repeats)
    floor_ms = median_ms(floor, args.repeats)
    print(f"hiper {hiper.__version__}, SmolLM2 tokenizer ({len(tok)} tokens), {torch.get_num_threads()} threads")
    print(f"{n} responses x {length} tokens (mean {lengths.mean():.0f}, max {lengths.max():.0f} valid); "
          f"masks identical to the reference on {m} responses: {same}\n")
    print(f"{'':52s} {'ms':>10s}  ratio")
    print(f"{'decode-and-search reference (both functions)':52s} {ref_ms:10.1f}  {ref_ms / ours_ms:7.0f}x C++")
    print(f"{'C++ span masker (spans, switch, value masks)':52s} {ours_ms:10.3f}  {1:7.0f}x")
    print(f"{'floor: allocate + write six (N, L) bool outputs':52s} {floor_ms:10.3f}  "
          f"C++ = {ours_ms / floor_ms:.2f}x floor")
    print(f"{'build the masker (SmolLM2, ' + str(len(tok)) + ' tokens)':52s} {build_ms:10.1f}")
    print(f"{'build the masker (' + str(len(big)) + ' tokens)':52s} {build_big_ms:10.1f}")
    if not same:
        raise SystemExit("error: the masker and the reference disagree")


if __name__ == "__main__":
    main()
