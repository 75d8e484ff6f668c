"""Writing benchmark results: plain JSON, atomic files, markdown tables, machine facts.

Standard library only, so a worker process pays nothing to import it.
"""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence


def to_jsonable(obj: Any) -> Any:
    """Plain-JSON version of ``obj``: numpy scalars/arrays to Python, NaN/inf to None."""
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "tolist") and not isinstance(obj, (str, bytes)):  # numpy scalar or array
        return to_jsonable(obj.tolist())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file in the same folder and ``os.replace``,
    so a reader never sees a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_json_atomic(path: str | os.PathLike, obj: Any) -> Path:
    """Atomically write ``obj`` as indented JSON (NaN/inf written as null)."""
    return write_text_atomic(path, json.dumps(to_jsonable(obj), indent=2, allow_nan=False) + "\n")


def format_value(value: Any, spec: str | Callable[[Any], str] = "") -> str:
    """Format one table cell; missing or non-finite values show as an em dash."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    if callable(spec):
        return spec(value)
    return format(value, spec)


def markdown_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[tuple[str, str, Any]]) -> str:
    """A GitHub markdown table.

    ``columns`` are ``(header, key, format)`` triples: ``key`` is looked up in each row and
    the value formatted with ``format`` (a format spec such as ``".3g"`` or a callable).
    """
    header = "| " + " | ".join(h for h, _, _ in columns) + " |"
    align = "|" + "|".join(":---" if i == 0 else "---:" for i in range(len(columns))) + "|"
    lines = [header, align]
    for row in rows:
        cells = [format_value(row.get(key), spec).replace("|", "\\|") for _, key, spec in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# ============================================================================================


def machine_info() -> dict:
    info = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "python_executable": sys.executable,
    }
    try:
        info["loadavg_at_start"] = list(os.getloadavg())
    except OSError:
        pass
    commit = git_commit()
    if commit:
        info["git_commit"] = commit
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu_model"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return info


def git_commit() -> str | None:
    """The repository's commit (at least 12 hex digits), with ``+changes`` when files that git tracks under
    ``bayesbio/``, ``models/`` or ``benchmarks/`` differ from it (untracked files and result
    folders do not count; nor do top-level files such as ``pyproject.toml``); None outside a git
    checkout or where git refuses (e.g. a repository owned by another user)."""
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=root, capture_output=True,
                              text=True, timeout=30, check=True).stdout.strip()
        diff = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", "bayesbio", "models",
                               "benchmarks", ":(exclude)benchmarks/results"], cwd=root, capture_output=True,
                              text=True, timeout=30, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("+changes" if diff else "") if head else None

