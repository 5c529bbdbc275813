"""The rollout engine: an LLM policy plays a pool of environments in the Plan-Execute format.

Every turn, for the environments still running only: build each prompt (`hiper.format`),
render it through the chat template, generate all responses in one batched call of the engine
(`hiper.engines`: Hugging Face generate or vLLM),
parse them (`parse_turn`), step the environments with the parsed actions, and record the turn
in the C++ `TrajectoryBuffer`. Finished environments cost nothing. Malformed output (garbage,
an empty response, an action that is not admissible) is recorded as an invalid turn and the
episode goes on. `run()` returns the packed batch, per-episode results and per-stage timings.

Progress: `progress=True` shows a bar of the turns on stderr (off by default: library code stays
quiet; the command line turns it on), and `on_turn` is called after every turn with a
`hiper.progress.TurnProgress` (turns done, environments still running, tokens and seconds).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import torch

from hiper.buffer import PackedBatch, TrajectoryBuffer
from hiper.engines import Engine, SamplingSettings, make_engine
from hiper.envs import EnvPool
from hiper.format import SWITCH, PlanExecuteState, build_prompt, parse_turn, render_prompt
from hiper.progress import RolloutBar, TurnProgress


@dataclass
class RolloutConfig:
    max_turns: int = 50
    max_new_tokens: int = 512
    max_prompt_length: int = 2048
    temperature: float = 1.0
    top_p: float = 1.0
    do_sample: bool = True
    history_length: int = 2
    env: str = "alfworld"    # the prompt's built-in role line and the parsing rules (webshop or alfworld style)
    role: str | None = None  # replaces the built-in role line (environments of your own)

    @classmethod
    def for_env(cls, env: str, **values) -> "RolloutConfig":
        """A config whose prompts speak of environment family `env` (hiper.envs.registry)."""
        from hiper.envs.registry import prompt_role

        key, role = prompt_role(env)
        return cls(env=key or "alfworld", role=None if key else role, **values)

    def __post_init__(self):
        if self.max_turns <= 0 or self.max_new_tokens <= 0:
            raise ValueError("max_turns and max_new_tokens must be positive")
        if not 0.0 < self.top_p <= 1.0 or self.temperature < 0.0:
            raise ValueError("top_p must be in (0, 1] and temperature >= 0")


@dataclass
class EpisodeResult:
    env: int
    won: bool
    turns: int
    switches: int
    invalid: int
    total_reward: float
    info: dict = field(default_factory=dict)


@dataclass
class RolloutResult:
    batch: PackedBatch
    episodes: list[EpisodeResult]
    timings: dict[str, float]
    observations: list[str] = field(default_factory=list)  # the text each turn saw, row-aligned with batch

    @property
    def success_rate(self) -> float:
        return sum(e.won for e in self.episodes) / max(1, len(self.episodes))


class RolloutEngine:
    def __init__(self, model, tokenizer, pool: EnvPool, config: RolloutConfig | None = None, *,
                 progress: bool = False, on_turn: Callable[[TurnProgress], None] | None = None,
                 engine: Engine | str | None = None):
        """`engine` samples the responses (hiper.engines): an engine object (kept across rollouts,
        its weights synced by the caller), a name (auto, hf, vllm: built here for this rollout), or
        None for Hugging Face generate on `model`."""
        self.model, self.tokenizer, self.pool = model, tokenizer, pool
        self.config = config or RolloutConfig()
        if not isinstance(progress, bool):
            raise TypeError(f"progress: expected True or False, got {type(progress).__name__}")
        if on_turn is not None and not callable(on_turn):
            raise TypeError(f"on_turn: expected a callable taking a TurnProgress, got {type(on_turn).__name__}")
        self.progress, self.on_turn = progress, on_turn
        if tokenizer.pad_token_id is None:
            raise ValueError("tokenizer: needs a pad token (hiper.models.prepare_tokenizer sets one)")
        tokenizer.padding_side = "left"
        self.buffer = TrajectoryBuffer(len(pool), pad_token_id=tokenizer.pad_token_id)
        # End a turn at the end-of-turn token of the chat template when the tokenizer has one.
        stop = [tokenizer.eos_token_id]
        for token in ("<|im_end|>", "<|eot_id|>", "<|end|>"):
            tid = tokenizer.convert_tokens_to_ids(token)
            if isinstance(tid, int) and tid != tokenizer.unk_token_id and tid not in stop:
                stop.append(tid)
        self.stop_ids = [t for t in stop if t is not None]
        cfg = self.config
        self.sampling = SamplingSettings(max_new_tokens=cfg.max_new_tokens, max_prompt_length=cfg.max_prompt_length,
                                         temperature=cfg.temperature, top_p=cfg.top_p, do_sample=cfg.do_sample,
                                         stop_ids=tuple(self.stop_ids))
        if engine is None or isinstance(engine, str):
            engine = make_engine(engine or "hf", model, tokenizer,
                                 max_model_len=cfg.max_prompt_length + cfg.max_new_tokens)
        elif not isinstance(engine, Engine):
            raise TypeError(f"engine: expected an engine name or a hiper.engines.Engine, got {type(engine).__name__}")
        self.engine = engine

    def _generate(self, prompts: list[str]):
        """(prompt ids, prompt mask, responses, response mask, prefill seconds) of one batched
        generation by the engine; the prefill is the forward over the prompts, up to the first new token."""
        out = self.engine.generate(prompts, self.sampling)
        return out.prompt_ids, out.prompt_mask, out.responses, out.response_mask, out.prefill_seconds

    def run(self, seeds: list[int | None] | None = None) -> RolloutResult:
        cfg, n = self.config, len(self.pool)
        timings = {"env": 0.0, "prompt": 0.0, "generate": 0.0, "parse": 0.0, "record": 0.0, "pack": 0.0}
        self.buffer.clear()
        t0 = time.perf_counter()
        observations = self.pool.reset(seeds)
        timings["env"] += time.perf_counter() - t0
        states = [PlanExecuteState(task=o.task, history_length=cfg.history_length) for o in observations]
        episodes = [EpisodeResult(i, False, 0, 0, 0, 0.0) for i in range(n)]
        active = list(range(n))
        seen: list[list[str]] = [[] for _ in range(n)]  # per environment, the observation of each turn
        reset_seconds = timings["env"]
        bar = RolloutBar(cfg.max_turns, n) if self.progress else None
        try:
            for turn in range(1, cfg.max_turns + 1):
                if not active:
                    break
                turn_start = time.perf_counter()
                generate_before = timings["generate"]
                prompt_ids, responses, response_mask, prefill_seconds, active = self._play_turn(
                    active, states, observations, episodes, seen, timings)
                report = TurnProgress(turn=turn, max_turns=cfg.max_turns, envs=n, rows=responses.shape[0],
                                      running=len(active), prompt_width=prompt_ids.shape[1],
                                      response_length=responses.shape[1], new_tokens=int(response_mask.sum()),
                                      generate_seconds=timings["generate"] - generate_before,
                                      prefill_seconds=prefill_seconds,
                                      turn_seconds=time.perf_counter() - turn_start, reset_seconds=reset_seconds)
                if bar is not None:
                    bar.update(report)
                if self.on_turn is not None:
                    self.on_turn(report)
        finally:
            if bar is not None:
                bar.close()
        t = time.perf_counter()
        batch = self.buffer.pack()
        timings["pack"] += time.perf_counter() - t
        timings["total"] = sum(timings.values())
        # The batch is trajectory-major (environment 0's turns, then 1's, ...), as is this list.
        return RolloutResult(batch, episodes, timings, [text for texts in seen for text in texts])

    def _play_turn(self, active, states, observations, episodes, seen, timings):
        """One turn of the environments in `active`: prompts, one batched generate, parsing,
        environment steps, recording. Returns the turn's prompt ids, responses, response mask and
        prefill seconds, and the environments still running."""
        cfg = self.config
        t = time.perf_counter()
        prompts = [render_prompt(self.tokenizer, build_prompt(states[i], observations[i].text,
                                                              observations[i].admissible_actions, cfg.env,
                                                              role=cfg.role))
                   for i in active]
        timings["prompt"] += time.perf_counter() - t
        t = time.perf_counter()
        prompt_ids, prompt_mask, responses, response_mask, prefill_seconds = self._generate(prompts)
        timings["generate"] += time.perf_counter() - t
        t = time.perf_counter()
        texts = self.tokenizer.batch_decode(responses.masked_fill(~response_mask, self.tokenizer.pad_token_id),
                                            skip_special_tokens=True)
        parsed = [parse_turn(text, "webshop" if cfg.env == "webshop" else "alfworld") for text in texts]
        timings["parse"] += time.perf_counter() - t
        t = time.perf_counter()
        steps = self.pool.step({i: p.action for i, p in zip(active, parsed)})
        timings["env"] += time.perf_counter() - t
        t = time.perf_counter()
        rewards = torch.tensor([steps[i].reward for i in active], dtype=torch.float32)
        # A step cap or the end of the rollout truncates an episode: recorded as not done, so
        # HAE can bootstrap it; only a real ending (won, lost, game over) is done.
        dones = torch.tensor([steps[i].done and not steps[i].info.get("truncated", False) for i in active])
        self.buffer.append(torch.tensor(active), prompt_ids, prompt_mask, responses, response_mask, rewards, dones,
                           valid=torch.tensor([p.valid for p in parsed]),
                           is_new_subgoal=torch.tensor([p.switch == SWITCH for p in parsed]))
        still = []
        for i, p in zip(active, parsed):
            step, ep = steps[i], episodes[i]
            states[i].record(observations[i].text, p)
            seen[i].append(observations[i].text)
            observations[i] = step.observation
            ep.turns += 1
            ep.switches += p.switch == SWITCH
            ep.invalid += not p.valid
            ep.total_reward += step.reward
            ep.won = ep.won or bool(step.info.get("won"))
            ep.info = step.info
            if not step.done:
                still.append(i)
        timings["record"] += time.perf_counter() - t
        return prompt_ids, responses, response_mask, prefill_seconds, still
