"""Reading the AlphaGRPO parity fixtures (shared/fixtures/alphagrpo) and the README's tolerances."""

from __future__ import annotations

import json
import math

import torch
from fixture_paths import FIXTURES

ROOT = FIXTURES / "alphagrpo"
_NONFINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


def _decode(value):
    if isinstance(value, str) and value in _NONFINITE:
        return _NONFINITE[value]
    if isinstance(value, list):
        return [_decode(v) for v in value]
    if isinstance(value, dict):
        return {k: _decode(v) for k, v in value.items()}
    return value


def family(name: str) -> dict:
    path = ROOT / "cases" / f"{name}.json"
    return _decode(json.loads(path.read_text())) if path.exists() else {"cases": []}


def cases(name: str) -> list[dict]:
    return family(name).get("cases", [])


def tensors(case: dict) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(ROOT / case["tensor_file"])


def dtype(name: str | None) -> torch.dtype:
    return getattr(torch, (name or "float32").replace("torch.", ""))


def assert_tensor(got: torch.Tensor, want: torch.Tensor, rtol: float = 1e-5, atol: float = 1e-6, what=""):
    """README: |got - want| <= atol + rtol |want|; non-finite values must match exactly."""
    got = torch.as_tensor(got).detach().double().reshape(want.shape)
    want = want.detach().double()
    assert torch.equal(torch.isnan(got), torch.isnan(want)), f"{what}: nan positions differ"
    inf = torch.isinf(want)
    assert torch.equal(got[inf], want[inf]), f"{what}: inf values differ"
    finite = torch.isfinite(want)
    diff = (got[finite] - want[finite]).abs()
    bound = atol + rtol * want[finite].abs()
    assert bool((diff <= bound).all()), f"{what}: max diff {diff.max().item() if diff.numel() else 0}"


def assert_scalar(got, want, what=""):
    """JSON scalars: absolute 1e-6; magnitudes above 1 also pass with relative 1e-5."""
    if isinstance(got, torch.Tensor):
        got = got.detach()
    got, want = float(got), float(want)
    if math.isnan(want) or math.isinf(want):
        assert got == want or (math.isnan(got) and math.isnan(want)), what
        return
    ok = abs(got - want) <= 1e-6 or (abs(want) > 1 and abs(got - want) <= 1e-5 * abs(want))
    assert ok, f"{what}: got {got}, want {want}"


def assert_grad(got: torch.Tensor, want: torch.Tensor, what=""):
    assert_tensor(got, want, rtol=1e-4, atol=1e-6, what=what)


def assert_values(got, want, what=""):
    """Nested lists of numbers (or None) compared as JSON scalars."""
    if want is None:
        assert got is None, what
        return
    g = torch.as_tensor(got, dtype=torch.float64).reshape(-1).tolist()
    w = torch.as_tensor(want, dtype=torch.float64).reshape(-1).tolist()
    assert len(g) == len(w), f"{what}: {len(g)} values, want {len(w)}"
    for i, (a, b) in enumerate(zip(g, w, strict=True)):
        assert_scalar(a, b, f"{what}[{i}]")
