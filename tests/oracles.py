"""Where the shared oracle data lives; tests skip without it only outside CI."""

from __future__ import annotations

import os

import pytest

from scenelake.settings import PROJECT_ROOT

ORACLES = PROJECT_ROOT.parent / "shared" / "oracles"


def require_oracles() -> None:
    if ORACLES.is_dir():
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"{ORACLES} is missing: CI must have ../shared/oracles beside the clone")
    pytest.skip(f"{ORACLES} is not here")
