"""Read a discrete-time NeuronModel out of a Brian2 NeuronGroup's equations, threshold and reset.

A group is LIF-like when the membrane equation is linear in the membrane variable v with a constant slope:
dv/dt = a v + b (other differential variables, e.g. synaptic currents, set to 0; a refractory period is noted and
ignored). a < 0 gives kind "LIF" with tau = -1 / (a dt) timesteps, a = 0 kind "IF". A LIF whose membrane reads one
other differential variable I that decays on its own (dI/dt = c I, c < 0: a current-based synapse, e.g. on_pre
"I += w") is kind "CubaLIF" with tau_syn = -1 / (c dt) (two states per neuron, which the chip charges for); a
membrane that reads other state variables gets a note that they cost nothing. Potentials are shifted so the
reference point is 0: the rest potential v_rest = -b / a for LIF, the reset value for IF; threshold and v_reset
are given relative to it, in the membrane's SI unit (volt for a voltage). Synapses that jump v (on_pre "v += w")
are SpikingJelly's decay_input=False. What cannot be read becomes a note; the hardware model uses only the kind.
"""
from __future__ import annotations

import re

import numpy as np
import sympy
from brian2.parsing.sympytools import str_to_sympy

from hwmodels.trace import NeuronModel


def _strip_int(expr: sympy.Expr) -> sympy.Expr:
    """Replace Brian2's int_(x) (from `unless refractory`) by x."""
    return expr.replace(lambda e: isinstance(e, sympy.Function) and e.func.__name__ == "int_", lambda e: e.args[0])


def _value(group, name: str, namespace: dict, notes: list[str]) -> float:
    """SI value of identifier `name` for `group`: a group variable (one value, else the mean with a note) or an
    external constant resolved by Brian2 (group namespace, then `namespace`, then units/defaults)."""
    if name in group.variables:
        a = np.asarray(group.variables[name].get_value(), np.float64).ravel()
        if a.size > 1 and np.any(a != a[0]):
            notes.append(f"{name} varies across neurons; its mean is used")
        return float(a.mean())
    try:
        return float(np.asarray(group.resolve_all([name], namespace)[name].get_value()))
    except KeyError:  # a constant of the scope the network ran in, gone by now
        raise ValueError(f"{type(group).__name__} {group.name!r}: identifier {name!r} cannot be resolved; pass the "
                         f"values the network ran with as from_brian2(..., namespace={{{name!r}: ...}})") from None


def _evaluate(group, expr: sympy.Expr, namespace: dict, notes: list[str], zero: set[str]) -> sympy.Expr:
    """`expr` with every symbol in `zero` set to 0, not_refractory to 1 and every other symbol to its value."""
    subs = {}
    for s in expr.free_symbols:
        if s.name in zero:
            subs[s] = 0
        elif s.name == "not_refractory":
            subs[s] = 1
        else:
            subs[s] = _value(group, s.name, namespace, notes)
    return sympy.simplify(expr.subs(subs))


def _threshold(group, namespace: dict, notes: list[str]) -> tuple[str | None, float | None]:
    """(membrane variable, threshold value) from a condition `v > expr` / `v >= expr` (or mirrored)."""
    cond = group.events.get("spike")
    if cond is None:
        notes.append("no threshold")
        return None, None
    rel = str_to_sympy(cond)
    if not isinstance(rel, (sympy.StrictGreaterThan, sympy.GreaterThan, sympy.StrictLessThan, sympy.LessThan)):
        notes.append(f"threshold {cond!r} is not a comparison; not read")
        return None, None
    for var_side, other in ((rel.lhs, rel.rhs), (rel.rhs, rel.lhs)):
        if isinstance(var_side, sympy.Symbol) and var_side.name in group.equations.diff_eq_names:
            value = _evaluate(group, other, namespace, notes, set())
            if value.is_number:
                return var_side.name, float(value)
    notes.append(f"threshold {cond!r} is not 'v > constant'; not read")
    return None, None


def _reset(group, var: str, namespace: dict, notes: list[str]) -> tuple[str, float | None]:
    """("hard", value) for `v = expr`, ("soft", None) for `v -= expr`, ("none", None) otherwise."""
    code = group.event_codes.get("spike", "") or ""
    for stmt in re.split(r"[;\n]", code):
        m = re.match(rf"^\s*{re.escape(var)}\s*(-?=)\s*(.+?)\s*$", stmt)
        if m and m.group(1) == "-=":
            return "soft", None
        if m:
            value = _evaluate(group, str_to_sympy(m.group(2)), namespace, notes, set())
            if value.is_number:
                return "hard", float(value)
    notes.append(f"reset {code!r} does not set {var}; soft reset assumed")
    return "none", None


def _slope(group, var: str, namespace: dict, notes: list[str]) -> tuple[float | None, float | None]:
    """(a, b) of dv/dt = a v + b, or (None, None) when the equation is not linear in v with a constant slope."""
    eq = group.equations[var]
    expr = _strip_int(str_to_sympy(eq.expr.code))
    v = next((s for s in expr.free_symbols if s.name == var), sympy.Symbol(var))
    others = set(group.equations.diff_eq_names) - {var}
    slope = sympy.diff(expr, v)
    a = None if v in slope.free_symbols else _evaluate(group, slope, namespace, notes, others)
    b = _evaluate(group, expr.subs(v, 0), namespace, notes, others)
    if a is None or not (a.is_number and b.is_number):
        notes.append(f"d{var}/dt = {eq.expr.code} is not linear in {var}; not LIF-like")
        return None, None
    return float(a), float(b)


def _synaptic_tau(group, var: str, dt: float, namespace: dict, notes: list[str]) -> float | None:
    """tau_syn in timesteps when d`var`/dt reads exactly one other differential variable I with dI/dt = c I, c < 0
    and -1 / (c dt) >= 1 (a decaying synaptic current); None otherwise, with a note when d`var`/dt reads other
    state variables (read as 0: the neuron is costed as one state)."""
    names = set(group.equations.diff_eq_names)
    read = sorted({s.name for s in str_to_sympy(group.equations[var].expr.code).free_symbols} & (names - {var}))
    if not read:
        return None
    if len(read) == 1:
        expr = _strip_int(str_to_sympy(group.equations[read[0]].expr.code))
        cur = next((s for s in expr.free_symbols if s.name == read[0]), sympy.Symbol(read[0]))
        if not ({s.name for s in expr.free_symbols} & names) - {read[0]}:
            c = _evaluate(group, sympy.diff(expr, cur), namespace, notes, set())
            drive = _evaluate(group, expr.subs(cur, 0), namespace, notes, set())
            if c.is_number and drive.is_number and float(drive) == 0.0 and float(c) < 0 and -1 / (float(c) * dt) >= 1:
                membrane = _strip_int(str_to_sympy(group.equations[var].expr.code))
                gain = sympy.diff(membrane, next(s for s in membrane.free_symbols if s.name == read[0]))
                if var in {s.name for s in gain.free_symbols}:
                    notes.append(f"{read[0]} scales with {var} (conductance-based): read as a current-based "
                                 "CubaLIF, two states like it")
                return -1.0 / (float(c) * dt)
    notes.append(f"d{var}/dt reads the state variable(s) {', '.join(read)}, not one decaying synaptic current: "
                 "read as 0, the neuron is costed as one state")
    return None


def neuron_model(group, dt: float, namespace: dict | None = None) -> tuple[NeuronModel, str]:
    """(NeuronModel, note) of a Brian2 NeuronGroup simulated with time step `dt` seconds.

    note: "" when every parameter was read, else what was approximated. Raises ValueError when the group's
    time constant is shorter than one time step (tau/dt < 1).
    """
    notes: list[str] = []
    namespace = dict(namespace or {})
    if "lastspike" in group.variables:  # Brian2 defines it for groups with a refractory period
        notes.append("the refractory period is not modelled (the chip's neurons have none)")
    var, theta = _threshold(group, namespace, notes)
    if var is None:
        return NeuronModel("LIF", 1.0, None, 0.0, False), "; ".join(notes)
    a, b = _slope(group, var, namespace, notes)
    mode, v_reset = _reset(group, var, namespace, notes)
    if a is None or a > 0:
        if a is not None:
            notes.append(f"d{var}/dt grows with {var} (slope {a:g} /s); not LIF-like")
        ref = v_reset or 0.0
        return NeuronModel("LIF", theta - ref, None, None if v_reset is None else 0.0, False), "; ".join(notes)
    if a == 0:
        if _synaptic_tau(group, var, dt, namespace, notes) is not None:
            notes.append(f"d{var}/dt reads a decaying synaptic current, a second state that no IF kind has: costed "
                         "as one state")
        ref = v_reset if v_reset is not None else 0.0
        return NeuronModel("IF", theta - ref, None, None if v_reset is None else 0.0, False), "; ".join(notes)
    tau = -1.0 / (a * dt)
    if tau < 1.0:
        raise ValueError(f"NeuronGroup {group.name!r}: tau = {-1 / a:g} s is shorter than dt = {dt:g} s")
    rest = -b / a
    if v_reset is not None and not np.isclose(v_reset, rest):
        notes.append(f"reset {v_reset:g} != rest {rest:g}: SpikingJelly's LIF leaks to its reset value")
    tau_syn = _synaptic_tau(group, var, dt, namespace, notes)
    return (NeuronModel("LIF" if tau_syn is None else "CubaLIF", theta - rest, tau,
                        None if v_reset is None else v_reset - rest, False, tau_syn), "; ".join(notes))
