"""Do comparison.compare's results stay the same across a change? Save its tables before, check them after.

A speed-up of the bootstrap (or of coco_eval.interpolated_ap under it) must not move any number.
This runs `compare` on a few generated inputs (the null test's two equal runs, the planted
regression, fewer blocks and resamples, a small comparison whose slices are all exact) and
either saves every output table (--save) or checks the current code against saved ones
(--check): the same rows and columns, floats equal to 1e-12 with nan in the same places, every
other column (flags, same_as, counts) identical. It prints the largest float difference seen.
Usage:

  .venv/bin/python bench/compare_check.py --save /tmp/compare_before.pkl    # on the old code
  .venv/bin/python bench/compare_check.py --check /tmp/compare_before.pkl   # on the new code
"""

from __future__ import annotations

import argparse
import pickle
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from scenelake import comparison  # noqa: E402
from tests.generated_records import generated_records  # noqa: E402

EQUAL = {"run-a": 0.84, "run-b": 0.84}
# name: (seed, captures, runs or None for the generator's own, baseline, candidate, options)
CASES = {
    "null-1000": (1000, 60, EQUAL, "run-a", "run-b", comparison.Options()),
    "null-1001": (1001, 60, EQUAL, "run-a", "run-b", comparison.Options()),
    "planted-1": (1, 200, None, "person-v1", "person-v2", comparison.Options()),
    "blocks-8": (2, 40, None, "person-v1", "person-v2", comparison.Options(resamples=300, seed=5, blocks=8)),
    "small-exact": (3, 8, EQUAL, "run-b", "run-a", comparison.Options(resamples=200, seed=1, min_captures=2)),
}


def run_cases() -> dict[str, pd.DataFrame]:
    tables = {}
    for name, (seed, captures, runs, base, cand, options) in CASES.items():
        if runs is None:
            records, attrs = generated_records(seed, captures=captures)
        else:
            records, attrs = generated_records(seed, captures=captures, runs=runs, regression=False)
        start = time.perf_counter()
        tables[name] = comparison.compare(records[base], records[cand], attrs, options)
        print(f"{name}: {len(tables[name])} rows in {time.perf_counter() - start:.1f} s", flush=True)
    return tables


def differences(want: pd.DataFrame, got: pd.DataFrame) -> float:
    """The largest float difference; AssertionError on any other difference."""
    assert list(want.columns) == list(got.columns), (list(want.columns), list(got.columns))
    assert len(want) == len(got), (len(want), len(got))
    largest = 0.0
    for column in want.columns:
        a, b = want[column], got[column]
        assert a.dtype == b.dtype, (column, a.dtype, b.dtype)
        if a.dtype.kind == "f":
            x, y = a.to_numpy(), b.to_numpy()
            assert (np.isnan(x) == np.isnan(y)).all(), column
            diff = np.abs(np.nan_to_num(x) - np.nan_to_num(y))
            assert diff.max(initial=0.0) <= 1e-12, (column, float(diff.max()))
            largest = max(largest, float(diff.max(initial=0.0)))
        else:
            assert a.equals(b), column
    return largest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--save", type=Path, help="write the tables of the current code here")
    mode.add_argument("--check", type=Path, help="compare the current code's tables with these")
    args = parser.parse_args()
    tables = run_cases()
    if args.save:
        args.save.write_bytes(pickle.dumps(tables))
        print(f"saved {len(tables)} tables to {args.save}")
        return
    saved = pickle.loads(args.check.read_bytes())
    assert set(saved) == set(tables), (set(saved), set(tables))
    for name, want in saved.items():
        print(f"{name}: identical but for floats differing by at most {differences(want, tables[name]):.3g}")
    print("all tables equal")


if __name__ == "__main__":
    main()
