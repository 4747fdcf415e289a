"""Seconds per comparison.compare call, and how much of it the bootstrap's AP takes.

The input is the one tests/unit/test_comparison.py's null test repeats 20 times: two runs of
equal quality on 60 generated captures, every single attribute and pair as slices (about 200
slices, 400 slice x run AP computations), 1000 capture resamples. The script times `repeat`
calls after one warm-up call, and reports the share spent in comparison._blocked_ap (the
replicates' AP from blocked cumulative counts) and in coco_eval.interpolated_ap (the 101-point
interpolation, called by _blocked_ap and for the exact point estimates) by wrapping both with
timers. Run it before and after a change to get the ratio; another process on the machine
shows as noise, so keep `repeat` >= 3 and compare the minimum. Usage:

  .venv/bin/python bench/compare_bootstrap.py --repeat 3
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from scenelake import coco_eval, comparison  # noqa: E402
from tests.generated_records import generated_records  # noqa: E402

spent: dict[str, float] = {}


def timed(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            spent[name] = spent.get(name, 0.0) + time.perf_counter() - start
    return wrapper


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3, help="timed compare calls (after one warm-up call)")
    parser.add_argument("--captures", type=int, default=60, help="generated captures per run")
    parser.add_argument("--seed", type=int, default=1000, help="generated_records seed")
    args = parser.parse_args()
    records, attrs = generated_records(args.seed, captures=args.captures, runs={"run-a": 0.84, "run-b": 0.84},
                                       regression=False)
    comparison.compare(records["run-a"], records["run-b"], attrs)  # warm-up: imports, caches
    # detection_estimates looks both names up at call time, so wrapping the module attributes times every call.
    comparison._blocked_ap = timed("_blocked_ap", comparison._blocked_ap)
    coco_eval.interpolated_ap = timed("interpolated_ap", coco_eval.interpolated_ap)
    calls = []
    for _ in range(args.repeat):
        spent.clear()
        start = time.perf_counter()
        comparison.compare(records["run-a"], records["run-b"], attrs)
        total = time.perf_counter() - start
        calls.append(total)
        print(f"compare {total:6.2f} s   _blocked_ap {spent['_blocked_ap']:6.2f} s "
              f"({spent['_blocked_ap'] / total:4.0%})   interpolated_ap {spent['interpolated_ap']:6.2f} s "
              f"({spent['interpolated_ap'] / total:4.0%}, inside _blocked_ap and for the exact estimates)",
              flush=True)
    print(f"seconds per compare call: min {min(calls):.2f}, mean {sum(calls) / len(calls):.2f} "
          f"over {len(calls)} calls")


if __name__ == "__main__":
    main()
