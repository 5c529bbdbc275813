"""Running the `hiper` command in tests: as a user does (a subprocess) or in this process."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from hiper.cli import main


def hiper(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    """`python -m hiper ARGS` as a user runs it (one thread, no --debug from the caller's environment)."""
    environ = {key: value for key, value in os.environ.items() if key != "HIPER_DEBUG"}
    environ.update(OMP_NUM_THREADS="1", **env)
    return subprocess.run([sys.executable, "-m", "hiper", *args], capture_output=True, text=True, cwd=cwd,
                          env=environ, timeout=300)


def run(argv: list[str], capsys) -> tuple[int, str, str]:
    """main(argv) in this process: (exit code, stdout, stderr); argparse's errors exit."""
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err
