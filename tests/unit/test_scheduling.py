"""`make test` runs each module whole in one test process, so a module's fixtures (its lake) are built once.

Run for real: pytest with the Makefile's xdist options on four small modules, in a subprocess. With
pytest 9 and xdist's `loadgroup`, the tests of one module were spread over both processes and every
module-scoped lake was built twice or more; this test is what would have said so.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections import defaultdict

import pytest

from scenelake.settings import PROJECT_ROOT
from tests.conftest import LONGEST_FIRST, SHARED_LAKES, work_unit

pytestmark = pytest.mark.unit
MODULES = ["tests/unit/test_imports.py", "tests/unit/test_settings.py", "tests/unit/test_views.py",
           "tests/unit/test_access.py"]


def xdist_options() -> list[str]:
    makefile = (PROJECT_ROOT / "Makefile").read_text()
    line = re.search(r"^XDIST := (.*)$", makefile, re.MULTILINE)
    assert line, "the Makefile names its xdist options XDIST"
    return line.group(1).replace("$(TEST_WORKERS)", "2").split()


def test_a_module_runs_whole_in_one_process() -> None:
    done = subprocess.run([sys.executable, "-m", "pytest", *xdist_options(), "-v", "-p", "no:cacheprovider",
                           *MODULES], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    workers: dict[str, set[str]] = defaultdict(set)
    for worker, nodeid in re.findall(r"^\[(gw\d+)\] \[ *\d+%\] PASSED (\S+)", done.stdout, re.MULTILINE):
        workers[nodeid.split("::", 1)[0]].add(worker)
    assert sorted(workers) == sorted(MODULES)
    assert all(len(w) == 1 for w in workers.values()), dict(workers)
    assert len(set().union(*workers.values())) == 2  # and both processes had work


def test_shared_lakes_are_one_unit_and_the_longest_units_exist() -> None:
    assert work_unit("tests/integration/test_conservation.py::test_x[a]") == "faulty_lake"
    assert work_unit("tests/integration/test_curated_views.py::test_y") == "faulty_lake"
    assert work_unit("tests/unit/test_views.py::test_z") == "test_views"
    modules = {p.stem for p in (PROJECT_ROOT / "tests").rglob("test_*.py")}
    assert set(LONGEST_FIRST) <= {SHARED_LAKES.get(m, m) for m in modules}  # no stale name in the order
