"""Paths and sampler settings shared by every side-by-side benchmark (standard library only)."""

from __future__ import annotations

from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
WORKER = BENCH_DIR / "_worker.py"

#: Sampler settings shared by both sides (Stan's defaults; passed explicitly to both).
TARGET_ACCEPT = 0.8
MAX_TREE_DEPTH = 10

FULL_SIZE = {"chains": 4, "warmup": 1000, "samples": 1000}
QUICK_SIZE = {"chains": 2, "warmup": 100, "samples": 100}

# environment variables that would make a worker read a compilation cache we did not choose
SCRUBBED_ENV = (
    "JAX_COMPILATION_CACHE_DIR",
    "JAX_ENABLE_COMPILATION_CACHE",
    "BAYESBIO_CACHE_DIR",
    "JAX_ENABLE_X64",
    "JAX_PLATFORMS",
    "JAX_PLATFORM_NAME",
)
