"""SI prefixes for presenting values that are kept in base SI units (J, s, W) everywhere else: '35.1 µJ', and
one shared prefix for a whole axis or column. Units are written with µ (MICRO)."""
from __future__ import annotations

import math
import numbers
from collections.abc import Iterable

MICRO = "\u00b5"
#: (power of ten, prefix) from large to small
PREFIXES = ((9, "G"), (6, "M"), (3, "k"), (0, ""), (-3, "m"), (-6, MICRO), (-9, "n"), (-12, "p"), (-15, "f"),
            (-18, "a"))


def si_prefix(magnitude: float) -> tuple[float, str]:
    """(factor, prefix) that brings |magnitude| into [1, 1000) when multiplied by factor; (1.0, "") for 0, NaN
    and inf; the smallest (largest) prefix beyond the table's ends."""
    if not math.isfinite(magnitude) or magnitude == 0:
        return 1.0, ""
    for power, prefix in PREFIXES:
        if abs(magnitude) >= 10.0 ** power * (1 - 5e-13):
            return 10.0 ** -power, prefix
    power, prefix = PREFIXES[-1]
    return 10.0 ** -power, prefix


def si(value: float, unit: str, digits: int = 4) -> str:
    """`value` (in the base unit `unit`) with an SI prefix and `digits` significant digits, e.g. si(3.51e-5, "J")
    == '35.1 µJ'; 'nan J' / 'inf s' for non-finite values."""
    value = float(value)
    if not math.isfinite(value):
        return f"{value} {unit}"
    factor, prefix = si_prefix(value)
    text = f"{value * factor:.{digits}g}"
    if abs(float(text)) >= 1000 and prefix != PREFIXES[0][1]:  # rounding carried into the next prefix
        return si(float(text) / factor, unit, digits)
    return f"{text} {prefix}{unit}"


def si_scale(values: Iterable[float], unit: str) -> tuple[float, str]:
    """(factor, prefixed unit) shared by all `values` (an axis or a column), chosen by the largest finite |value|:
    si_scale([2e-6, 3.5e-5], "J") == (1e6, 'µJ'); (1.0, unit) when there is no finite non-zero value."""
    finite = [abs(float(v)) for v in values if math.isfinite(float(v)) and float(v) != 0]
    factor, prefix = si_prefix(max(finite)) if finite else (1.0, "")
    return factor, f"{prefix}{unit}"


def point_outcome(row: dict) -> str:
    """A result row's log text: "accuracy 97.30% (on chip 96.00%), energy 23.060 µJ, latency 240.10 µs" (on chip:
    accuracy_hw, the chip's own predictions on the simulated samples, when the row has it), or "accuracy ...,
    not simulated: <its error>" for a point that was not simulated (e.g. the network does not fit its chip)."""
    head = f"accuracy {row['accuracy']:.2%}"
    on_chip = row.get("accuracy_hw")
    if isinstance(on_chip, numbers.Real) and not isinstance(on_chip, bool) and math.isfinite(on_chip):
        head += f" (on chip {on_chip:.2%})"
    if row.get("error"):
        return f"{head}, not simulated: {row['error']}"
    return (f"{head}, energy {row.get('energy_j', math.nan) * 1e6:.3f} µJ, "
            f"latency {row.get('latency_s', math.nan) * 1e6:.2f} µs")


def plural(n: int, word: str) -> str:
    """"1 design point", "4 design points": `n` and `word`, with an "s" unless n is 1."""
    return f"{n} {word}{'' if n == 1 else 's'}"
