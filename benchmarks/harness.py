"""The one small harness every benchmark shares: what it printed, with the command, commit and machine.

A benchmark's ``main`` runs inside ``record(name, title)``: whatever it prints to stdout (Markdown:
tables and short paragraphs) is shown as usual and also stored in ``benchmarks/results/<name>.json``
with the command line, the git commit (and whether the tree had uncommitted changes), the date and
the machine. Progress goes to stderr and is not stored. A shell benchmark is recorded through
``python benchmarks/harness.py NAME TITLE bash benchmarks/<script>.sh``. ``python benchmarks/report.py``
builds BENCHMARKS.md from those files and the suite's leaderboard.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"


def git_commit() -> dict[str, Any]:
    """The checkout's commit and whether tracked files differ from it (None outside a checkout)."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return {"commit": None, "dirty": None}
    return {"commit": commit, "dirty": bool(dirty)}


def machine() -> str:
    """CPU model, core count and Python: enough to tell two machines apart."""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}"


class _Tee(io.TextIOBase):
    def __init__(self, stream: Any) -> None:
        self.stream, self.buffer_ = stream, io.StringIO()

    def write(self, text: str) -> int:
        self.stream.write(text)
        return self.buffer_.write(text)

    def flush(self) -> None:
        self.stream.flush()


@contextlib.contextmanager
def record(name: str, title: str, argv: list[str] | None = None) -> Iterator[None]:
    """Show and store what the block prints as ``benchmarks/results/<name>.json``.

    Nothing is stored if the block raises (a Ctrl-C leaves the previous result in place); the file
    is replaced atomically.
    """
    argv = sys.argv if argv is None else argv
    script = os.path.relpath(argv[0], ROOT) if argv else name
    runner = "" if script.endswith(".sh") or argv[:1] == ["bash"] else "python "
    command = runner + shlex.join([script, *argv[1:]])
    commit = git_commit()  # the code that runs, even if the tree changes while it does
    tee, start = _Tee(sys.stdout), time.perf_counter()
    with contextlib.redirect_stdout(tee):
        yield
    entry = {
        "name": name,
        "title": title,
        "command": command,
        **commit,
        "date": time.strftime("%Y-%m-%d"),
        "machine": machine(),
        "seconds": round(time.perf_counter() - start, 1),
        "markdown": tee.buffer_.getvalue().strip(),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    tmp = RESULTS / f".{name}.json.tmp"
    tmp.write_text(json.dumps(entry, indent=2) + "\n")
    os.replace(tmp, RESULTS / f"{name}.json")


def main(argv: list[str]) -> int:
    """``python benchmarks/harness.py NAME TITLE COMMAND...``: record a command that is not Python."""
    if len(argv) < 3:
        print(main.__doc__, file=sys.stderr)
        return 2
    name, title, command = argv[0], argv[1], argv[2:]
    with record(name, title, argv=command):
        proc = subprocess.run(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)
        print(proc.stdout, end="")
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
