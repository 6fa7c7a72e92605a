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
    message_s: the least time a message occupies its synapse unit after its message in: one synaptic event of
        the fastest storage format used + the dendrite (serial: + message in; every message carries >= 1 paid
        synaptic event to its core).
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
    message_s: float = 0.0


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
    mode = receive_mode(chip)
    work, head_in = RECEIVE_MODES[mode](event_work(a.deliv_events, per_event), a.deliv_messages,
                                        core.message_in_latency_s)
    message_s = float(per_event.min(initial=np.inf)) + (core.message_in_latency_s if mode == "serial" else 0.0)
    return ActionTimes(update, update + sent * out_s, start + out_s, start + a.flow_messages * out_s, work,
                       out_s, head_in, chip.router.link_time_s, chip.barrier_latency_s(mapping.tiles_used),
                       message_s if np.isfinite(message_s) else 0.0)


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
    tails = train_tails_s(a, times, head_arrival)
    if tails is not None:  # a train's messages come further apart than its unit serves them
        order, bounds = a.deliv_groups[1:]
        finish_s = np.maximum(finish_s, np.maximum.reduceat(tails[order], bounds[:-1]))
    done = times.send_done_s.copy().reshape(-1)
    done[dkeys] = np.maximum(done[dkeys], finish_s)  # dkeys are distinct
    return done.reshape(times.send_done_s.shape)


def train_tails_s(actions: Actions, times: ActionTimes, head_arrival: np.ndarray) -> np.ndarray | None:
    """The earliest its last message can be served, per delivery (n_deliv,) s, or None when the messages of a
    train come no further apart than the least work of a message (times.message_s): the whole-flow makespan of
    destination_finish is then never below it.

    A train of m messages reaches its core at least max(message out, link time) apart (the source writes one
    message per message out, a link carries one per link time: hwmodels.timing.des), so its last message is
    served no earlier than head + (m - 1) x that spacing + the head's delay (in_s) + message_s.
    destination_finish alone charges a delivery's work from its head (all of it there at once): exact when
    every message's work is at least the spacing (exactness 'receive'), and otherwise below the
    message-level finish, which the larger of the two approaches from below (equal for one train per
    unit, e.g. 20 messages over a 1e6 messages/s link take 20 us, where the makespan alone gave one message's
    time). Buffer back-pressure (B x link time < a hop latency) can space a train further; that is not added
    (exactness 'buffers')."""
    spacing = max(times.out_s, times.link_s)
    if spacing <= times.message_s or not len(actions.deliv_messages):
        return None
    return head_arrival + (actions.deliv_messages - 1.0) * spacing + (times.in_s + times.message_s)


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
