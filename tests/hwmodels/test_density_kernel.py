"""hwmodels.kernels.density.play_steps against the density model's message loop as it ran in Python until the
kernel replaced it (hwmodels.timing.des_density, steps 2-3; kept here as the reference, `_play_step`), bit for bit
on random steps with blocking, FIFO waits at receivers and shared density keys; and the density DES of a small net
against its hand-computed values stays in tests/hwmodels/test_des_density.py."""
import heapq

import numpy as np
import scipy.sparse as sp
import pytest

from hwmodels.kernels.density import play_steps


def _play_step(ready: list, src: list, work: list, route: list, n_keys: int, n_cores: int,
               head_in: float) -> tuple[list, list]:
    """One step's message loop (module docstring, steps 2-3). ready/src/work/route: per message in send order
    (sorted by source core); route[k] = (key indices < n_keys, w, lat0, h + 1, blocking threshold, destination
    core). Returns (total blocking delay, last receive finish) per core."""
    shift, free, density = [0.0] * n_cores, [0.0] * n_cores, [0.0] * n_keys
    flight, mean, n_flight = [], 0.0, 0
    last = len(src) - 1
    heads = [(ready[k], k) for k in range(len(src)) if k == 0 or src[k - 1] != src[k]]
    heapq.heapify(heads)
    while heads:
        t, k = heapq.heappop(heads)
        while flight and flight[0][0] <= t:  # retire the messages their receiver has started
            _, j, keys, w = heapq.heappop(flight)
            for key in keys:
                density[key] -= w
            mean = mean + (mean - work[j]) / (n_flight - 1) if n_flight > 1 else 0.0
            n_flight -= 1
        keys, w, lat0, h1, cap, dst = route[k]
        d = 0.0
        for key in keys:
            d += density[key]
        c = src[k]
        if d > cap:
            block = (d - cap) * mean
            t += block
            shift[c] += block
        net = d * mean / h1
        arrive = t + (net if net > lat0 else lat0) + head_in
        f = free[dst]
        start = f if f > arrive else arrive
        free[dst] = start + work[k]
        heapq.heappush(flight, (start, k, keys, w))
        for key in keys:
            density[key] += w
        n_flight += 1
        mean += (work[k] - mean) / n_flight
        if k < last and src[k + 1] == c:
            heapq.heappush(heads, (ready[k + 1] + shift[c], k + 1))
    return shift, free


def _random_step(rng, n_msgs, n_cores, n_keys, n_routes, depth):
    """(ready, src, work, route index per message, routes as _play_step takes them) of one random step: messages
    sorted by source core, ready times rising per core, some routes with a finite blocking threshold."""
    src = np.sort(rng.integers(0, n_cores, n_msgs))
    ready = np.zeros(n_msgs)
    for c in np.unique(src):
        sel = np.flatnonzero(src == c)
        ready[sel] = np.cumsum(rng.exponential(1e-9, len(sel)))
    work = rng.exponential(3e-9, n_msgs)
    routes = []
    for _ in range(n_routes):
        keys = tuple(int(k) for k in rng.choice(n_keys, rng.integers(1, 5), replace=False))
        h1 = len(keys)
        cap = np.inf if depth is None else float(h1 * depth)
        routes.append((keys, 1.0 / (h1 + 1), float(rng.uniform(1e-9, 5e-9)), h1, cap, int(rng.integers(n_cores))))
    return ready, src, work, rng.integers(0, n_routes, n_msgs), routes


def _arrays(routes):
    """play_steps's route arguments of a list of _play_step routes."""
    keys, w, lat0, h1, cap, dst = zip(*routes)
    ptr = np.concatenate([[0], np.cumsum([len(k) for k in keys])]).astype(np.int64)
    flat = np.array([i for k in keys for i in k], np.int64)
    return ptr, flat, np.array(w), np.array(lat0), np.array(h1, np.float64), np.array(cap), np.array(dst, np.int64)


@pytest.mark.parametrize("depth", [None, 1, 3])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_play_steps_equals_the_python_loop_bit_for_bit(seed, depth):
    rng = np.random.default_rng(seed)
    n_cores, n_keys, n_routes, head_in = 6, 9, 12, 0.7e-9
    steps = [_random_step(rng, int(n), n_cores, n_keys, n_routes, depth) for n in (40, 1, 0, 300, 75)]
    routes = steps[0][4]  # one route table for the run, as des_density numbers its routes across steps
    bounds = np.concatenate([[0], np.cumsum([len(s[0]) for s in steps])]).astype(np.int64)
    cat = lambda i: np.concatenate([s[i] for s in steps])
    shift, free = np.full((2, len(steps), n_cores), np.nan)
    play_steps(bounds, cat(0), cat(1).astype(np.int64), cat(2), cat(3).astype(np.int64), *_arrays(routes), n_keys,
               head_in, shift, free)
    blocked = 0
    for k, (ready, src, work, route, _) in enumerate(steps):
        ref_shift, ref_free = _play_step(ready.tolist(), src.tolist(), work.tolist(),
                                         [routes[r] for r in route.tolist()], n_keys, n_cores, head_in)
        np.testing.assert_array_equal(shift[k], ref_shift)
        np.testing.assert_array_equal(free[k], ref_free)
        blocked += sum(v > 0 for v in ref_shift)
    assert np.isfinite(free).all() and (free[3] > 0).any()
    assert (blocked > 0) == (depth is not None)  # the finite buffers do block: the blocking branch is exercised


@pytest.mark.parametrize("cap, blocked", [(np.inf, 0.0), (0.5, 0.0), (0.25, 1.0)])
def test_play_steps_one_core_fifo_hand_computed(cap, blocked):
    """One core sends three messages (ready 0, 1, 2) over one route (key 0, w 1/2, lat0 1, h1 1, blocking threshold
    `cap`) to core 1, work 4 each, head_in 0. Message 0: density 0 -> arrives 0 + 1 = 1, starts 1, core 1 free at 5;
    message 1 (t 1): message 0 retired (started at 1 <= 1), density 0, mean 0 -> arrives 2, starts 5, free 9;
    message 2 (t 2): message 1 in flight (starts at 5): density 1/2, mean 4; above a threshold of 1/4 it is held
    (1/2 - 1/4) x 4 = 1 (t 3; at a threshold of 1/2 it is not: the rule is D > cap); net 1/2 x 4 / 1 = 2 > lat0,
    arrives t + 2 <= 9: starts 9, free 13."""
    shift, free = np.full((2, 1, 2), np.nan)
    play_steps(np.array([0, 3]), np.array([0.0, 1.0, 2.0]), np.zeros(3, np.int64), np.full(3, 4.0),
               np.zeros(3, np.int64), np.array([0, 1]), np.array([0]), np.array([0.5]), np.array([1.0]),
               np.array([1.0]), np.array([cap]), np.array([1]), 1, 0.0, shift, free)
    assert shift.tolist() == [[blocked, 0.0]] and free.tolist() == [[0.0, 13.0]]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_soma_prefix_equals_dense_running_sums(seed):
    """soma_prefix against the dense form it replaces: per step, the (accessed, spiking, updated and quiet) flags of
    the neurons in core order, cumulated, read between the spiking neuron's core start and itself."""
    from hwmodels.kernels.density import soma_prefix
    rng = np.random.default_rng(seed)
    size, n_steps = 60, 5
    core = rng.integers(0, 4, size)
    order = np.argsort(core, kind="stable")
    where = np.empty(size, np.int64)
    where[order] = np.arange(size)
    first = np.searchsorted(core[order], core).astype(np.int64)
    accessed, updated = rng.random(n_steps) < 0.7, rng.random((n_steps, size)) < 0.4
    spiked = rng.random((n_steps, size)) < 0.3
    h, idx = np.nonzero(spiked)
    perm = rng.permutation(len(idx))  # any spike order
    h, idx = h[perm].astype(np.int64), idx[perm].astype(np.int64)
    flags = np.stack([np.broadcast_to(accessed[:, None], (n_steps, size)), spiked, (updated | spiked) & ~spiked])
    cum = np.concatenate([np.zeros((3, n_steps, 1), np.int64), np.cumsum(flags[:, :, order], axis=2)], 2)
    want = (cum[:, h, where[idx] + 1] - cum[:, h, first[idx]]).T
    got = soma_prefix(where, first, order.astype(np.int64), accessed, updated, idx, h)
    assert len(idx) > 50 and (want[:, 2] > 0).any()
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("multicast", [False, True])
@pytest.mark.parametrize("blocks", [1, 3])
def test_expand_messages_equal_the_spikes_stack_rows(blocks, multicast):
    """One message per (spike, destination) with a non-zero message entry of its class's stack row, sorted by
    (spike, destination), the events the row's first nf blocks (a bits block after them is dropped), the spike's
    step, source core and soma prefix, and out = messages its (step, source core) has written so far (multicast:
    one per spike): against the dense rows read entry by entry and a count per group; classes of no destination,
    repeated classes, a group whose spikes send nothing, no spike."""
    from hwmodels.kernels.count import dst_major
    from hwmodels.kernels.density import expand_messages
    rng = np.random.default_rng(5)
    n, n_cls, nf = 9, 12, blocks - 1 if blocks > 1 else 1
    msg = (rng.random((n_cls, n)) < 0.35).astype(np.int64)
    msg[3] = 0  # a class that sends nothing
    vals = rng.integers(1, 9, (n_cls, blocks, n)) * msg[:, None, :]
    dense = np.concatenate([msg[:, None, :], vals], axis=1)  # (n_cls, 1 + blocks, n)
    m = sp.csr_matrix(dense.reshape(n_cls, -1))
    fan = dst_major(m.indptr.astype(np.int64), m.indices.astype(np.int64), m.data.astype(np.int64), n, 1 + blocks)
    cls = rng.integers(0, n_cls, 40).astype(np.int64)
    cls[10:13] = 3  # a (step, source) group of spikes that send nothing
    step, src = np.repeat(np.arange(5), 8), np.tile(np.repeat(np.arange(2), 4), 5)  # sorted (step, src) groups
    soma = rng.integers(0, 50, (40, 3))
    got = expand_messages(cls, step, src, soma, fan, nf, multicast)
    want, written = [], {}
    for i, c in enumerate(cls.tolist()):
        sent = False
        for d in range(n):
            if dense[c, 0, d]:
                key = (int(step[i]), int(src[i]))
                written[key] = written.get(key, 0) + (0 if multicast and sent else 1)
                sent = True
                want.append((int(step[i]), int(src[i]), d, tuple(soma[i].tolist()), written[key],
                             tuple(dense[c, 1:1 + nf, d])))
    assert list(zip(*(a.tolist() for a in got[:3]), map(tuple, got[3].tolist()), got[4].tolist(),
                    map(tuple, got[5].tolist()))) == want and len(want) > 40
    assert max(w[4] for w in want) > 2 and got[5].shape == (len(want), nf) and got[3].shape == (len(want), 3)
    assert all(a.dtype == np.int64 for a in got)
    empty = np.zeros(0, np.int64)
    none = expand_messages(empty, empty, empty, np.zeros((0, 3), np.int64), fan, nf, multicast)
    assert all(len(a) == 0 for a in none) and none[5].shape == (0, nf)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_play_steps_with_tied_receiver_starts_equals_the_python_loop(seed):
    """Receive works of 0 and times on a coarse grid: messages to one receiver start at the same instant, in
    either message order. The kernel's per-receiver FIFOs hold them in send order, one heap in (start, message)
    order; play_steps replays such steps with one heap, so every step still equals the Python loop bit for bit
    (kept in send order instead, most of these steps differ; steps without such ties keep the FIFOs' result,
    checked above)."""
    rng = np.random.default_rng(10 + seed)
    n_cores, n_keys, n_routes, head_in = 4, 5, 6, 0.0
    steps = []
    for n in (60, 200):
        src = np.sort(rng.integers(0, n_cores, n))
        ready = np.zeros(n)
        for c in np.unique(src):
            sel = np.flatnonzero(src == c)
            ready[sel] = np.cumsum(rng.integers(0, 3, len(sel))) * 1e-9
        work = rng.choice([0.0, 0.0, 1e-9, 3e-9, 7e-9], n)
        steps.append((ready, src, work, rng.integers(0, n_routes, n)))
    # two receivers (many messages per FIFO); the congestion term, blocking and the density weights make the
    # results depend on the order tied messages retire in (the mean work, float sums of 1/2 and 1/3)
    routes = [(tuple(int(k) for k in rng.choice(n_keys, rng.integers(1, 3), replace=False)),
               float(rng.choice([0.5, 1 / 3])), 1e-12, 2.0, 1.0, int(rng.integers(2))) for _ in range(n_routes)]
    bounds = np.concatenate([[0], np.cumsum([len(s[0]) for s in steps])]).astype(np.int64)
    cat = lambda i: np.concatenate([s[i] for s in steps])
    shift, free = np.full((2, len(steps), n_cores), np.nan)
    play_steps(bounds, cat(0), cat(1).astype(np.int64), cat(2), cat(3).astype(np.int64), *_arrays(routes), n_keys,
               head_in, shift, free)
    for k, (ready, src, work, route) in enumerate(steps):
        ref_shift, ref_free = _play_step(ready.tolist(), src.tolist(), work.tolist(),
                                         [routes[r] for r in route.tolist()], n_keys, n_cores, head_in)
        np.testing.assert_array_equal(shift[k], ref_shift)
        np.testing.assert_array_equal(free[k], ref_free)
