"""Where the tests find the project and the shared official data, independent of a test file's folder."""

from __future__ import annotations

from pathlib import Path

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
SHARED = REPO.parent / "shared"
BENCHMARKS = SHARED / "benchmarks"
FIXTURES = SHARED / "fixtures"

# --- parity fixtures: where they are, and what happens when they are not there ------------------------------
import os  # noqa: E402

import pytest  # noqa: E402

REQUIRE_ENV = (
    "EVALKIT_REQUIRE_FIXTURES"  # .ci/run sets it: a missing fixture or data folder fails, never skips
)
SHARED_FIXTURES_ENV = "EVALKIT_SHARED_FIXTURES"  # another set with the shared layout (e.g. the hidden one)
PARITY_FIXTURES_ENV = "EVALKIT_PARITY_FIXTURES"  # another set with the layout of tests/fixtures/parity
if os.environ.get(SHARED_FIXTURES_ENV):
    FIXTURES = Path(os.environ[SHARED_FIXTURES_ENV]).resolve()
PARITY = Path(os.environ.get(PARITY_FIXTURES_ENV) or TESTS / "fixtures" / "parity").resolve()


def fixtures_required() -> bool:
    return os.environ.get(REQUIRE_ENV, "") not in ("", "0")


def need(path: Path, what: str) -> Path:
    """`path` if it exists; else a failure under EVALKIT_REQUIRE_FIXTURES=1, a skip that says why otherwise."""
    if path.exists():
        return path
    message = f"{what} not found at {path}"
    if fixtures_required():
        pytest.fail(f"{message} ({REQUIRE_ENV} is set: parity data must be present)", pytrace=False)
    pytest.skip(f"{message}; set {REQUIRE_ENV}=1 to make this a failure")


def fixture_cases(path: Path, what: str, load, case_id=lambda case: str(case.get("case_id", case))) -> list:
    """Parametrize over every case `load(path)` returns; one failing/skipping placeholder when `path` is absent."""
    if not path.exists():
        return [pytest.param(None, id="fixtures-missing")]  # the test calls need(path) and skips/fails
    return [pytest.param(case, id=case_id(case)) for case in load(path)]
