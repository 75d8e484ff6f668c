"""One measurement of a benchmark, in a fresh process (started by ``common.spawn_worker``).

    python benchmarks/_worker.py CONFIG.json RESULT.json SPAWN_TIME

SPAWN_TIME is the parent's ``time.time()`` just before it created this process, so the
worker's start-up figures include interpreter start-up and every import. Only the standard
library is imported before the measured work starts.
"""

import time

T_MAIN = time.time()

import json  # noqa: E402
import sys  # noqa: E402


def main() -> int:
    cfg_path, out_path, t_spawn = sys.argv[1], sys.argv[2], float(sys.argv[3])
    with open(cfg_path) as fh:
        cfg = json.load(fh)
    import common  # benchmarks/ is sys.path[0]; stdlib-only at import

    if cfg["side"] == "stan":
        result = common.run_stan_worker(cfg, t_spawn, T_MAIN)
    elif cfg["side"] == "bayesbio":
        result = common.run_bayesbio_worker(cfg, t_spawn, T_MAIN)
    else:
        raise SystemExit(f"unknown side {cfg['side']!r}")
    common.write_json_atomic(out_path, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
