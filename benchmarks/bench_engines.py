"""Rollout engines side by side: new tokens per second of Hugging Face generate and vLLM on the
same prompts, model and dtype.

Each row is a ~730-token prompt (an ALFWorld-sized turn; rows differ from their first token on,
so no prompt prefix is shared) and samples up to 64 new tokens at temperature 1. Each engine
generates once untimed (warm-up, and vLLM's compilation), then `--repeats` timed times.

    python benchmarks/bench_engines.py [--model PATH] [--rows 16 64] [--dtype bf16] [--engines hf vllm]
"""
from __future__ import annotations

import argparse
import time

import torch

from hiper import models
from hiper.engines import SamplingSettings, make_engine

DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32}


def prompts(tokenizer, rows: int, tokens: int) -> list[str]:
    """`rows` distinct chat prompts of about `tokens` tokens each."""
    filler = ("You are in the middle of a room. Looking quickly around you, you see a cabinet 4, a cabinet 3, "
              "a countertop 1, a drawer 2, a fridge 1, a garbagecan 1, a microwave 1, and a sinkbasin 1. ")
    per_filler = len(tokenizer(filler, add_special_tokens=False)["input_ids"])
    body = filler * max(1, tokens // per_filler)
    return [tokenizer.apply_chat_template([{"role": "user", "content": f"Game {row}. {body}Your task is to put "
                                            "a clean mug in the microwave."}], tokenize=False,
                                          add_generation_prompt=True) for row in range(rows)]


def tokens_per_second(engine, texts: list[str], settings: SamplingSettings, repeats: int) -> float:
    engine.generate(texts, settings)  # warm-up
    tokens, seconds = 0, 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        out = engine.generate(texts, settings)
        seconds += time.perf_counter() - start
        tokens += int(out.response_mask.sum())
    return tokens / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="model name or path (default: SmolLM2-135M-Instruct, offline)")
    parser.add_argument("--rows", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--prompt-tokens", type=int, default=730)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="bf16")
    parser.add_argument("--engines", nargs="+", choices=["hf", "vllm"], default=["hf", "vllm"])
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()

    model, tokenizer = models.load(args.model, dtype=DTYPES[args.dtype])
    model.eval()
    settings = SamplingSettings(max_new_tokens=args.new_tokens, max_prompt_length=4 * args.prompt_tokens,
                                temperature=1.0, top_p=1.0, do_sample=True, stop_ids=(tokenizer.eos_token_id,))
    results: dict[tuple[str, int], float] = {}
    for name in args.engines:
        engine = make_engine(name, model, tokenizer, max_model_len=4 * args.prompt_tokens + args.new_tokens, seed=0)
        for rows in args.rows:
            torch.manual_seed(0)
            results[name, rows] = tokens_per_second(engine, prompts(tokenizer, rows, args.prompt_tokens), settings,
                                                    args.repeats)
            print(f"{name:>4} {args.dtype} {rows:3d} rows: {results[name, rows]:7.1f} new tokens/s", flush=True)
        if hasattr(engine, "close"):
            engine.close()
    print(f"\n| engine | {' | '.join(f'{rows} rows' for rows in args.rows)} |")
    print(f"|---|{'---|' * len(args.rows)}")
    for name in args.engines:
        print(f"| {name} ({args.dtype}) | {' | '.join(f'{results[name, rows]:.0f} tok/s' for rows in args.rows)} |")
    if {"hf", "vllm"} <= set(args.engines):
        print("vLLM / HF: " + ", ".join(f"{results['vllm', r] / results['hf', r]:.2f}x at {r} rows" for r in args.rows))


if __name__ == "__main__":
    main()
