"""Comparing numbers in tests: a failure names the tensor and shows its worst element."""
from __future__ import annotations

import numpy as np


def assert_close(actual, expected, *, atol: float, rtol: float = 0.0, name: str) -> None:
    """Fails unless |actual - expected| <= atol + rtol * |expected| at every element (torch tensors,
    numpy arrays or numbers, of one shape; NaN matches nothing). The message names `name`, how many
    elements are off, and the worst one (the most beyond its tolerance): its index, both values and
    their difference. torch.testing.assert_close's `msg=` replaces its numbers with the name alone."""
    got, want = _float64(actual), _float64(expected)
    if got.shape != want.shape:
        raise AssertionError(f"{name}: shape {tuple(got.shape)}, expected {tuple(want.shape)}")
    difference = np.abs(got - want)
    allowed = atol + rtol * np.abs(want)
    # NaN in either (a NaN difference) counts as infinitely far off, so it is reported first.
    excess = np.where(np.isnan(difference), np.inf, difference - allowed)
    off = excess > 0
    if not off.any():
        return
    worst = np.unravel_index(int(np.argmax(excess)), excess.shape) if excess.ndim else ()
    index = ", ".join(str(int(i)) for i in worst)
    raise AssertionError(
        f"{name}: {int(off.sum())} of {off.size} elements differ by more than atol {atol:g} + rtol {rtol:g} x |expected|; "
        f"the worst, [{index}]: {got[worst]:.9g} vs expected {want[worst]:.9g}, difference {difference[worst]:.3g} "
        f"(allowed {allowed[worst]:.3g})")


def _float64(x) -> np.ndarray:
    if hasattr(x, "detach"):  # a torch tensor, wherever it lives
        x = x.detach().cpu().double().numpy()
    return np.asarray(x, dtype=np.float64)
