"""Which neurons a core accesses and updates in each hardware step, under the chip's neuron rules
(hwmodels.chip.spec.CoreSpec.neuron_access_rule / neuron_update_rule), shared by the energy model (hwmodels.energy.costs)
and the core pipeline's soma time (hwmodels.timing.core_times).

Access "window": the neurons of a population are accessed in each hardware step of its timestep window;
"every_step": every mapped non-input neuron in every hardware step, pipeline fill and drain included (SANA-FE's
soma model charges an access to every mapped neuron each step, Boyle et al., IEEE TCAD 2025). Update "all":
every neuron of a population in its window; "active": the neurons the trace records as updated (input, bias or
a non-zero membrane potential, hwmodels.activity), which includes steps after the window for neurons left with a
potential. A neuron that spikes is always updated.
"""
from __future__ import annotations

import numpy as np

from hwmodels.events.actions import Actions
from hwmodels.chip.spec import ChipSpec


def neuron_work(a: Actions, chip: ChipSpec) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(accesses, updates of spiking neurons, updates of quiet neurons), int64 (n_samples, n_steps, n_cores),
    under the chip's neuron_access_rule and neuron_update_rule (hwmodels.chip.spec.CoreSpec)."""
    c, state = chip.core, a.state_neurons[None, None, :]
    spiking = a.spikes * (state > 0)
    updated = a.recorded if c.neuron_update_rule == "active" else a.window[None] * state
    quiet = np.maximum(updated - spiking, 0)
    if c.neuron_access_rule == "every_step":
        accesses = np.broadcast_to(state, a.spikes.shape)
    else:
        accesses = np.broadcast_to(a.window[None] * state, a.spikes.shape)
    return accesses, spiking, quiet
