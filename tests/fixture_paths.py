"""Where the tests find the project and the shared official data, independent of a test file's folder."""

from __future__ import annotations

from pathlib import Path

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
SHARED = REPO.parent / "shared"
BENCHMARKS = SHARED / "benchmarks"
FIXTURES = SHARED / "fixtures"
