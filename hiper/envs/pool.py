"""A vectorised pool of environments, optionally in worker processes.

    pool = EnvPool([EnvSpec("alfworld", game_file=g) for g in games], num_workers=2)
    observations = pool.reset(seeds)
    steps = pool.step({0: "go to desk 1", 3: "look"})   # only the listed environments step

Environments are described by picklable `EnvSpec`s and built inside the workers. A worker
that dies or stops answering within `timeout` seconds is restarted and the call raises
`EnvWorkerError` naming the environments (and seeds) it was running: the run never hangs.
"""
from __future__ import annotations

import multiprocessing as mp
import traceback
from dataclasses import dataclass, field
from typing import Any

from hiper.envs.base import Observation, Step, TextEnv


@dataclass(frozen=True)
class EnvSpec:
    """How to build one environment: kind in {"alfworld", "textworld", "scienceworld"} and its
    keyword arguments, or kind "custom" with kwargs {"factory": "module:callable", ...}: any
    importable callable returning a TextEnv (how to plug in an environment of your own)."""

    kind: str
    kwargs: dict = field(default_factory=dict)

    def make(self) -> TextEnv:
        if self.kind == "alfworld":
            from hiper.envs.alfworld import AlfworldEnv

            return AlfworldEnv(**self.kwargs)
        if self.kind == "textworld":
            from hiper.envs.textworld_cooking import CookingGame, TextWorldEnv

            kwargs = dict(self.kwargs)
            if "game" in kwargs:
                return TextWorldEnv.cooking(CookingGame(**kwargs.pop("game")), **kwargs)
            return TextWorldEnv(**kwargs)
        if self.kind == "scienceworld":
            from hiper.envs.scienceworld import ScienceWorldEnv

            return ScienceWorldEnv(**self.kwargs)
        if self.kind == "custom":
            import importlib

            kwargs = dict(self.kwargs)
            module, _, name = kwargs.pop("factory").partition(":")
            return getattr(importlib.import_module(module), name)(**kwargs)
        raise ValueError(f"kind: expected alfworld, textworld, scienceworld or custom, got {self.kind!r}")


class EnvWorkerError(RuntimeError):
    """A worker process crashed or timed out; its environments' episodes are lost."""


def _serve(conn, specs: dict[int, EnvSpec]) -> None:
    envs: dict[int, TextEnv] = {}
    try:
        while True:
            cmd, payload = conn.recv()
            if cmd == "close":
                break
            out = {}
            for idx, arg in payload.items():
                try:
                    if idx not in envs:
                        envs[idx] = specs[idx].make()
                    out[idx] = envs[idx].reset(arg) if cmd == "reset" else envs[idx].step(arg)
                except Exception:  # noqa: BLE001 - sent back to the parent with the environment named
                    out[idx] = _Failure(traceback.format_exc())
            conn.send(out)
    except (EOFError, KeyboardInterrupt):
        pass
    finally:
        for env in envs.values():
            try:
                env.close()
            except Exception:  # noqa: BLE001 - closing is best effort
                pass


@dataclass
class _Failure:
    traceback: str


class EnvPool:
    def __init__(self, specs: list[EnvSpec], num_workers: int = 0, timeout: float = 300.0):
        if not specs:
            raise ValueError("specs: need at least one environment")
        self.specs = list(specs)
        self.timeout = timeout
        self.num_workers = min(num_workers, len(specs))
        self._seeds: dict[int, Any] = {}
        if self.num_workers == 0:
            self._local = {i: spec.make() for i, spec in enumerate(self.specs)}
        else:
            self._ctx = mp.get_context("spawn")
            self._owner = {i: i % self.num_workers for i in range(len(specs))}
            self._workers = [self._start(w) for w in range(self.num_workers)]

    def __len__(self) -> int:
        return len(self.specs)

    def _start(self, w: int):
        parent, child = self._ctx.Pipe()
        mine = {i: s for i, s in enumerate(self.specs) if self._owner[i] == w}
        proc = self._ctx.Process(target=_serve, args=(child, mine), daemon=True)
        proc.start()
        child.close()
        return proc, parent

    def _restart(self, w: int) -> None:
        proc, conn = self._workers[w]
        proc.kill()
        proc.join()
        conn.close()
        self._workers[w] = self._start(w)

    def _describe(self, indices) -> str:
        return ", ".join(f"#{i} {self.specs[i].kind} {self.specs[i].kwargs} seed={self._seeds.get(i)}" for i in indices)

    def _call(self, cmd: str, payload: dict[int, Any]) -> dict[int, Any]:
        if self.num_workers == 0:
            out = {}
            for idx, arg in payload.items():
                env = self._local[idx]
                try:
                    out[idx] = env.reset(arg) if cmd == "reset" else env.step(arg)
                except Exception as exc:  # noqa: BLE001
                    raise EnvWorkerError(f"{cmd} failed in {self._describe([idx])}: {exc}") from exc
            return out
        by_worker: dict[int, dict[int, Any]] = {}
        for idx, arg in payload.items():
            by_worker.setdefault(self._owner[idx], {})[idx] = arg
        for w, part in by_worker.items():
            try:
                self._workers[w][1].send((cmd, part))
            except (OSError, BrokenPipeError) as exc:  # the worker died since the last call
                self._restart(w)
                raise EnvWorkerError(f"worker {w} was dead before {cmd} ({exc}); restarted. Lost episodes: "
                                     f"{self._describe(part)}") from exc
        out: dict[int, Any] = {}
        for w, part in by_worker.items():
            proc, conn = self._workers[w]
            try:
                if not conn.poll(self.timeout):
                    raise TimeoutError(f"no answer within {self.timeout} s")
                out.update(conn.recv())
            except (EOFError, OSError, TimeoutError) as exc:
                self._restart(w)
                raise EnvWorkerError(f"worker {w} failed during {cmd} ({exc}); restarted. Lost episodes: "
                                     f"{self._describe(part)}") from exc
        for idx, res in out.items():
            if isinstance(res, _Failure):
                raise EnvWorkerError(f"{cmd} failed in {self._describe([idx])}:\n{res.traceback}")
        return out

    def reset(self, seeds: list[int | None] | None = None) -> list[Observation]:
        seeds = list(seeds) if seeds is not None else [None] * len(self)
        if len(seeds) != len(self):
            raise ValueError(f"seeds: expected {len(self)}, got {len(seeds)}")
        self._seeds = dict(enumerate(seeds))
        out = self._call("reset", dict(enumerate(seeds)))
        return [out[i] for i in range(len(self))]

    def step(self, actions: dict[int, str]) -> dict[int, Step]:
        unknown = [i for i in actions if not 0 <= i < len(self)]
        if unknown:
            raise ValueError(f"actions: unknown environment indices {unknown}")
        return self._call("step", dict(actions))

    def close(self) -> None:
        if self.num_workers == 0:
            for env in self._local.values():
                env.close()
            return
        for proc, conn in self._workers:
            try:
                conn.send(("close", None))
            except (OSError, BrokenPipeError):
                pass
            proc.join(timeout=10)
            if proc.is_alive():
                proc.kill()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
