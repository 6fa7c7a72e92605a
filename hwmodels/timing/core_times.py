"""The per-core pipeline of one hardware step, shared by the DES and the analytic model: stage durations on a
chip (ActionTimes), the send side of every core and the receive side of every destination core.

Stages of a core in a hardware step (after the previous step's barrier):
1. soma: the core accesses and updates its neurons one after another (accesses x t_access + updates of
   spiking neurons x t_active + of quiet ones x t_inactive, under the chip's neuron rules,
   hwmodels.events.neuron_rules), using the input its dendrites accumulated before the barrier;
2. message out: then it writes its spike messages one after another (message_out_latency_s each), flow by flow
   in route order; message k of flow f is ready at update + (messages before f + k) x message_out;
3. network (model-dependent: hwmodels.timing.analytic without waits, hwmodels.timing.des with channel contention), then one
   link time to eject into the destination core's input FIFO (unbounded);
4. message in: message_in_latency_s per message, FIFO, overlapping the synapse unit (a message is read in while
   the previous one is processed, as on Loihi where synaptic processing overlaps spike reception); a delivery
   occupies the receive side for the slower of the two stages, max(synaptic work, messages x message in),
   after its head's message in (when message in is slower than a message's synaptic work the message-in stage
   paces the train; this flow-level form is then approximate). core.receive_mode "serial" (when the spec has
   the field) instead reads each message in and then processes it, without overlap: work = messages x message
   in + synaptic work, as SANA-FE's Loihi model charges a receive cost per message (Boyle et al. 2025);
5. synapse + dendrite: one unit per core, FIFO over messages; per synaptic event the weight read (synop latency
   of its storage format) and the dendritic accumulate (core.dendrite_latency_s when the spec has it, else 0)
   run back to back. The accumulated input is consumed by the soma of the next step.
The step ends when every unit is idle; the barrier (by tiles in use) closes it.

Closed forms (exact, proved in hwmodels.timing.des): the send side has no contention, so its times are sums; the receive
side is a work-conserving FIFO server fed by head arrivals and feeding nothing back, so its finish time is
max_j (a_j + i + sum of the work of flows arriving at or after a_j) over head arrivals a_j, exact at message
level provided every message's synaptic work is at least the message-in latency and the spacing of the
messages of a flow (hwmodels.timing.core_times.exactness 'receive').
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hwmodels.events.actions import Actions, key_groups, run_starts
from hwmodels.mapping.map import Mapping
from hwmodels.events.neuron_rules import neuron_work
from hwmodels.chip.spec import ChipSpec
from hwmodels.kernels import finish


def _receive_overlap(events_s: np.ndarray, messages: np.ndarray, in_s: float) -> tuple[np.ndarray, float]:
    """Message in overlaps the synapse unit: a delivery occupies the receive side for the slower stage, after
    its head's message in."""
    return np.maximum(events_s, messages * in_s), in_s


def _receive_serial(events_s: np.ndarray, messages: np.ndarray, in_s: float) -> tuple[np.ndarray, float]:
    """Each message is read in, then processed, one after the other (no overlap)."""
    return events_s + messages * in_s, 0.0


#: core.receive_mode -> fn(synaptic work s, messages, message-in s) -> (delivery work s, head delay s)
RECEIVE_MODES = {"overlap": _receive_overlap, "serial": _receive_serial}


def receive_mode(chip: ChipSpec) -> str:
    """core.receive_mode when the spec has it, else "overlap" (Loihi: synaptic processing overlaps spike
    reception, Davies et al. 2018). Raises ValueError for a name outside RECEIVE_MODES."""
    mode = getattr(chip.core, "receive_mode", None) or "overlap"
    if mode not in RECEIVE_MODES:
        raise ValueError(f"core.receive_mode: {mode!r} is not one of {', '.join(RECEIVE_MODES)}")
    return mode


def dendrite_costs(chip: ChipSpec) -> tuple[float, float]:
    """(latency s, energy J) of one dendritic accumulate: core.dendrite_latency_s / dendrite_energy_j when the
    spec has them, else 0 (no shipped preset publishes a separate accumulate cost)."""
    return (float(getattr(chip.core, "dendrite_latency_s", 0.0) or 0.0),
            float(getattr(chip.core, "dendrite_energy_j", 0.0) or 0.0))


@dataclass(frozen=True, eq=False)
class ActionTimes:
    """Durations (s) of the actions of a batch on a chip, the same for the DES and the analytic model.

    update_s: (n_samples, n_steps, n_cores) soma time; send_done_s: same shape, soma + messages out.
    flow_ready_s / flow_tail_s: (n_flows,) time its first / last message is ready at the source router.
    deliv_work_s: (n_deliv,) receive-side work of a delivery (RECEIVE_MODES): overlap, max(sum over formats of
        events x (synop + dendrite), messages x message in); serial, their sum.
    out_s: one message out; in_s: delay of a delivery's head before its work starts (message in when it
        overlaps, 0 when serial); link_s: one message on a link (1 / link bandwidth); barrier_s: the barrier.
    """

    update_s: np.ndarray
    send_done_s: np.ndarray
    flow_ready_s: np.ndarray
    flow_tail_s: np.ndarray
    deliv_work_s: np.ndarray
    out_s: float
    in_s: float
    link_s: float
    barrier_s: float


_group_starts = run_starts  # the first element of every run of equal keys


def action_times(actions: Actions, chip: ChipSpec, mapping: Mapping) -> ActionTimes:
    """Stage durations of `actions` on `chip` (see ActionTimes and the module docstring)."""
    a, core = actions, chip.core
    out_s = core.message_out_latency_s
    accesses, spiking, quiet = neuron_work(a, chip)
    update = (accesses * core.neuron_access_latency_s + spiking * core.neuron_active_latency_s
              + quiet * core.neuron_inactive_latency_s)
    sent = a.messages_sent  # the counts of messages are the batch's (kept on it); only their durations change
    start = update.reshape(-1)[a.flow_src_key] + a.messages_before * out_s
    per_event = np.array([core.synop_latency_s.of(f) for f in a.formats]) + dendrite_costs(chip)[0]
    work, head_in = RECEIVE_MODES[receive_mode(chip)](event_work(a.deliv_events, per_event), a.deliv_messages,
                                                     core.message_in_latency_s)
    return ActionTimes(update, update + sent * out_s, start + out_s, start + a.flow_messages * out_s, work,
                       out_s, head_in, chip.router.link_time_s, chip.barrier_latency_s(mapping.tiles_used))


def event_work(events: np.ndarray, per_event: np.ndarray) -> np.ndarray:
    """Work (s) of deliveries: events (n, n_formats) synaptic events per storage format times per_event (n_formats,)
    s each, float64 (n,). One format (the usual case) is one product per delivery, the value the matrix product
    gives, without a BLAS call: BLAS threads woken here spin beside the DES's own threads afterwards
    (Spikformer-4-384's DES was 19 ms slower with numpy's BLAS on two threads than on one)."""
    if events.shape[1] == 1:
        return events[:, 0] * per_event[0]
    return events @ per_event


def destination_finish(keys: np.ndarray, arrival: np.ndarray, work: np.ndarray,
                       groups: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Finish time of every destination's synapse unit serving its deliveries in arrival order.

    keys: int64 (n,) destination key per delivery ((sample * n_steps + step) * n_cores + dst); arrival: (n,)
    time its head is ready for the synapse unit (head arrival + message in); work: (n,) its work. groups: the
    keys' (distinct keys, stable order, run starts + n) when already made (Actions.deliv_groups). Returns
    (unique keys, finish s): the makespan of a work-conserving single server, max_j (a_j + sum_{i >= j} w_i)
    over deliveries sorted by arrival (ties in any order give the same value), evaluated by the compiled kernel
    hwmodels.kernels.finish.
    """
    if not len(keys):
        return np.zeros(0, np.int64), np.zeros(0)
    uniq, order, bounds = key_groups(keys) if groups is None else groups
    return uniq, finish.makespans(order, bounds, np.asarray(arrival, float), np.asarray(work, float))


def core_done_s(actions: Actions, times: ActionTimes, head_arrival: np.ndarray) -> np.ndarray:
    """When every unit of every core is idle, per step from its start, (n_samples, n_steps, n_cores), s: the
    later of the send side (soma + messages out) and the synapse unit's finish.

    head_arrival: (n_deliv,) time the first message of each delivery enters its destination core (after
    ejection), from the network model.
    """
    a = actions
    dkeys, finish_s = destination_finish(a.deliv_keys, head_arrival + times.in_s, times.deliv_work_s,
                                         a.deliv_groups)
    done = times.send_done_s.copy().reshape(-1)
    done[dkeys] = np.maximum(done[dkeys], finish_s)  # dkeys are distinct
    return done.reshape(times.send_done_s.shape)


def step_latencies(done_s: np.ndarray, barrier_s: float) -> np.ndarray:
    """Latency (s) of every hardware step, (n_samples, n_steps): the last core's done time + the barrier."""
    return done_s.max(axis=2, initial=0.0) + barrier_s


def core_busy_s(actions: Actions, times: ActionTimes) -> np.ndarray:
    """Busy time per sample and core summed over the steps, (n_samples, n_cores): per step the longer of its send
    side (soma + messages out) and its synapse unit's work (the two run in parallel, so busy <= step latency)."""
    recv = np.bincount(actions.deliv_keys, weights=times.deliv_work_s, minlength=times.send_done_s.size)
    busy = np.maximum(times.send_done_s.reshape(-1), recv).reshape(times.send_done_s.shape)
    return busy.sum(axis=1)


def exactness(chip: ChipSpec, formats: tuple[str, ...]) -> dict[str, bool]:
    """The conditions under which the flow-level DES equals a message-by-message simulation (hwmodels.timing.des):
    'receive': max(message_in, message_out, link time) <= min synop latency (formats used) + dendrite latency
    (serial receive mode: max(message_out, link time) <= message_in + min synop + dendrite latency);
    'buffers': router.buffer_depth is None, or buffer_depth x link time >= every hop latency."""
    core, r = chip.core, chip.router
    work = min((core.synop_latency_s.of(f) for f in formats), default=np.inf) + dendrite_costs(chip)[0]
    if receive_mode(chip) == "serial":  # message in is part of every message's work, never a separate stage
        work, core = work + core.message_in_latency_s, core.model_copy(update={"message_in_latency_s": 0.0})
    hops = [r.hop_latency_ew_s, r.hop_latency_ns_s] + [v for v in [getattr(r, "chip_link_latency_s", None)] if v]
    depth = r.buffer_depth
    return {"receive": max(core.message_in_latency_s, core.message_out_latency_s, r.link_time_s) <= work,
            "buffers": depth is None or depth * r.link_time_s >= max(hops)}
