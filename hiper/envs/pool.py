"""A vectorised pool of environments, optionally in worker processes.

    pool = EnvPool([EnvSpec("alfworld", {"game_file": g}) for g in games], num_workers=2)
    observations = pool.reset(seeds)
    steps = pool.step({0: "go to desk 1", 3: "look"})   # only the listed environments step

Environments are described by picklable `EnvSpec`s (hiper.envs.spec) and built inside the workers. With workers the
run never hangs on an environment: a call waits at most `timeout` seconds for all of them, a worker
that dies or does not answer in time is killed (and started afresh on next use), and the call raises
`EnvWorkerError` naming the environments (and seeds) whose episodes were lost; close() gives workers
a few seconds, then kills them. In-process (num_workers=0) there is nothing to kill, so an environment
stuck in a call blocks it.

After a failed call the pool stays in step: every worker's answer to the call has been read (or the
worker killed), so a later call never receives a stale one, and an environment whose episode was lost
must be reset before it steps again (stepping it raises `EnvWorkerError` naming it).
"""
from __future__ import annotations

import multiprocessing as mp
import time
import traceback
from dataclasses import dataclass
from multiprocessing import connection as mp_connection
from typing import Any

from hiper.envs.base import Observation, Step, TextEnv
from hiper.envs.spec import EnvSpec


class EnvWorkerError(RuntimeError):
    """Some environments of a pool call failed: one raised, or its worker process crashed or timed out.

    `failed` lists the environments whose episodes are lost (for a worker that crashed or timed out, every
    environment it held); each must be reset before it steps again. `results` holds what the call returned
    for its other environments, which did complete it and may carry on.
    """

    def __init__(self, message: str, failed=(), results: dict[int, Any] | None = None):
        super().__init__(message)
        self.failed = sorted(failed)
        self.results = dict(results or {})


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


@dataclass
class _Problem:
    """One failure within a call: what to report, the environments whose episodes it lost, and its cause."""

    text: str
    lost: list[int]
    cause: BaseException | None = None


# How long close() lets workers close their environments before killing them (capped by the pool's
# timeout), and how long to wait for a killed worker to be reaped (SIGKILL is immediate unless the
# process is stuck in the kernel, where waiting longer would not help).
CLOSE_GRACE_S = 10.0
REAP_WAIT_S = 5.0


class EnvPool:
    """Environments stepped in batches, in-process (num_workers=0) or spread over worker processes.

    A call (reset or step) attempts every environment it is given and reads every worker's answer, waiting
    at most `timeout` seconds in all, before it returns or raises, so no answer is ever left behind to be
    taken for the next call's. If anything failed it raises EnvWorkerError: the environments it names lost
    their episodes (a worker that crashed or timed out is killed with every environment it held, and started
    afresh on next use); the others completed the call and their results are on the error. Stepping an
    environment that has not been reset since it was built or lost its episode raises EnvWorkerError naming
    it, rather than quietly playing a game nobody reset.
    """

    def __init__(self, specs: list[EnvSpec], num_workers: int = 0, timeout: float = 300.0):
        if not specs:
            raise ValueError("specs: need at least one environment")
        not_specs = [type(s).__name__ for s in specs if not isinstance(s, EnvSpec)]
        if not_specs:
            raise TypeError(f"specs: expected EnvSpec items, got {not_specs[0]}")
        if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
            raise ValueError(f"num_workers: expected an integer >= 0, got {num_workers!r}")
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
            raise ValueError(f"timeout: expected a positive number of seconds, got {timeout!r}")
        self.specs = list(specs)
        self.timeout = float(timeout)
        self.num_workers = min(num_workers, len(specs))
        self._seeds: dict[int, Any] = {}
        self._needs_reset = set(range(len(specs)))  # not reset since built, or lost their episode
        self._closed = False
        if self.num_workers == 0:
            self._local = {i: spec.make() for i, spec in enumerate(self.specs)}
        else:
            self._ctx = mp.get_context("spawn")
            self._owned = [list(range(w, len(specs), self.num_workers)) for w in range(self.num_workers)]
            self._owner = {i: w for w, owned in enumerate(self._owned) for i in owned}
            # (process, pipe) per worker; None for one that was killed, started again on next use.
            self._workers: list[tuple[Any, Any] | None] = [self._start(w) for w in range(self.num_workers)]

    def __len__(self) -> int:
        return len(self.specs)

    def _start(self, w: int):
        parent, child = self._ctx.Pipe()
        mine = {i: self.specs[i] for i in self._owned[w]}
        proc = self._ctx.Process(target=_serve, args=(child, mine), daemon=True)
        proc.start()
        child.close()
        return proc, parent

    def _kill(self, w: int) -> int | None:
        """Kills worker w if it runs, reaps it and closes its pipe; returns its exit code. Its environments
        go with it, so each needs a reset before it steps again."""
        self._needs_reset.update(self._owned[w])
        slot, self._workers[w] = self._workers[w], None
        if slot is None:
            return None
        proc, conn = slot
        proc.kill()  # harmless on a process that already exited, whose exit code is kept
        proc.join(REAP_WAIT_S)
        conn.close()
        return proc.exitcode

    def _lose_worker(self, w: int, cmd: str, reason: str | None = None) -> _Problem:
        """Kills worker w after a failure (a crash when no `reason` is given) and reports what it lost."""
        code = self._kill(w)
        reason = reason or f"it died, exit code {code}"
        return _Problem(f"worker {w} failed during {cmd} ({reason}); killed, restarted on next use. Lost "
                        f"episodes: {self._describe(self._owned[w])}", self._owned[w])

    def _describe(self, indices) -> str:
        return ", ".join(f"#{i} {self.specs[i].kind} {self.specs[i].kwargs} seed={self._seeds.get(i)}" for i in indices)

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("EnvPool: used after close()")

    def _call(self, cmd: str, payload: dict[int, Any]) -> dict[int, Any]:
        try:
            if self.num_workers == 0:
                results, problems = self._call_local(cmd, payload)
            else:
                results, problems = self._call_workers(cmd, payload)
        except BaseException:
            # Interrupted (KeyboardInterrupt, ...): no result of the call reached the caller, so none of
            # its environments is in a state the caller knows.
            self._needs_reset.update(payload)
            raise
        failed = {idx for problem in problems for idx in problem.lost}
        if cmd == "reset":
            self._needs_reset.difference_update(results)
        self._needs_reset.update(failed)
        if problems:
            completed = f"; the other {len(results)} completed it (see .results)" if results else ""
            message = (f"{cmd} failed for {len(failed)} environment(s), whose episodes are lost: reset them "
                       f"before stepping them again{completed}\n" + "\n".join(p.text for p in problems))
            raise EnvWorkerError(message, failed, results) from next((p.cause for p in problems if p.cause), None)
        return results

    def _call_local(self, cmd: str, payload: dict[int, Any]) -> tuple[dict[int, Any], list[_Problem]]:
        results, problems = {}, []
        for idx, arg in payload.items():
            env = self._local[idx]
            try:
                results[idx] = env.reset(arg) if cmd == "reset" else env.step(arg)
            except Exception as exc:  # noqa: BLE001 - reported with the environment named, once all have run
                problems.append(_Problem(f"{cmd} failed in {self._describe([idx])}: {type(exc).__name__}: {exc}",
                                         [idx], exc))
        return results, problems

    def _call_workers(self, cmd: str, payload: dict[int, Any]) -> tuple[dict[int, Any], list[_Problem]]:
        by_worker: dict[int, dict[int, Any]] = {}
        for idx, arg in payload.items():
            by_worker.setdefault(self._owner[idx], {})[idx] = arg
        results, problems = {}, []
        waiting: set[int] = set()  # workers that were sent the command and whose answer is not read yet
        try:
            for w, part in by_worker.items():
                if self._workers[w] is None:
                    self._workers[w] = self._start(w)
                try:
                    self._workers[w][1].send((cmd, part))
                    waiting.add(w)
                except OSError as exc:  # BrokenPipeError and kin: the worker died since the last call
                    problems.append(self._lose_worker(w, cmd, f"it was dead before the call: {exc}"))
            deadline = time.monotonic() + self.timeout
            while waiting:
                # A worker is ready when it answered or exited (its sentinel), whichever comes first.
                handles = {}
                for w in waiting:
                    proc, conn = self._workers[w]
                    handles[conn], handles[proc.sentinel] = w, w
                ready = mp_connection.wait(list(handles), timeout=max(0.0, deadline - time.monotonic()))
                if not ready:
                    for w in sorted(waiting):
                        problems.append(self._lose_worker(w, cmd, f"no answer within {self.timeout:g} s"))
                    waiting.clear()
                    break
                for w in sorted({handles[h] for h in ready}):
                    conn = self._workers[w][1]
                    try:
                        answer = conn.recv() if conn.poll() else None  # None: it exited without answering
                    except (EOFError, OSError):
                        answer = None
                    waiting.discard(w)
                    if answer is None:
                        problems.append(self._lose_worker(w, cmd))
                        continue
                    for idx, res in answer.items():
                        if isinstance(res, _Failure):
                            problems.append(_Problem(f"{cmd} failed in {self._describe([idx])}:\n{res.traceback}",
                                                     [idx]))
                        else:
                            results[idx] = res
        except BaseException:
            # Interrupted mid-call: kill the workers still busy with it, so that their answers can never be
            # read as a later call's.
            for w in waiting:
                self._kill(w)
            raise
        return results, problems

    def reset(self, seeds: list[int | None] | None = None) -> list[Observation]:
        self._check_open()
        seeds = list(seeds) if seeds is not None else [None] * len(self)
        if len(seeds) != len(self):
            raise ValueError(f"seeds: expected {len(self)}, got {len(seeds)}")
        self._seeds = dict(enumerate(seeds))
        out = self._call("reset", dict(enumerate(seeds)))
        return [out[i] for i in range(len(self))]

    def step(self, actions: dict[int, str]) -> dict[int, Step]:
        self._check_open()
        if not isinstance(actions, dict):
            raise TypeError(f"actions: expected a dict of environment index -> action, got {type(actions).__name__}")
        unknown = [i for i in actions if not (isinstance(i, int) and 0 <= i < len(self))]
        if unknown:
            raise ValueError(f"actions: unknown environment indices {unknown}")
        not_reset = sorted(self._needs_reset.intersection(actions))
        if not_reset:
            raise EnvWorkerError(f"step: not reset since they were built or lost their episode, call reset() "
                                 f"first: {self._describe(not_reset)}", not_reset)
        return self._call("step", dict(actions))

    def close(self) -> None:
        """Closes every environment. Workers get a short grace to close theirs, then are killed; never blocks
        for long. Closing twice is harmless."""
        if self._closed:
            return
        self._closed = True
        if self.num_workers == 0:
            for env in self._local.values():
                env.close()
            return
        running = [(w, slot) for w, slot in enumerate(self._workers) if slot is not None]
        for _, (_, conn) in running:
            try:
                conn.send(("close", None))
            except OSError:  # already dead: killed and reaped below
                pass
        deadline = time.monotonic() + min(self.timeout, CLOSE_GRACE_S)
        for w, (proc, _) in running:
            proc.join(max(0.0, deadline - time.monotonic()))
            self._kill(w)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
