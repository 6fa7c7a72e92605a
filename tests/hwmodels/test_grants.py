"""The grant kernel (hwmodels.kernels.grants) on queues that many flows wait for at once: each queue grants its
users in (request time, flow) order at max(request, release of the previous holder), checked against the grants
computed by hand. The roots join their queues in node order, so later ones displace a queue's least waiting node
(kept in its QUEUE record) and the others are pushed and popped through the binary heap of the rest."""
import numpy as np

from hwmodels.kernels import grants

_NONE_I, _NONE_F = np.zeros(0, np.int64), np.zeros(0)


def _play_roots(ready: np.ndarray, queue: np.ndarray, n_queues: int, hop: float, link_s: float):
    """grants.play of one step of single-channel flows (flow i = node i, a root on queue[i]; one message each:
    cm 0, tail = ready), unicast without slot terms; returns (grant, release) float64 (n,)."""
    n = len(ready)
    order = np.argsort(queue, kind="stable")  # nodes of a queue are its users start[q]..start[q + 1] - 1
    start = np.concatenate([[0], np.cumsum(np.bincount(queue, minlength=n_queues))]).astype(np.int64)
    assert np.array_equal(queue[order], np.repeat(np.arange(n_queues), np.diff(start)))
    g, rel, granted, early = grants.play(
        ready, ready.copy(), np.arange(n, dtype=np.int64), queue.astype(np.int64), np.array([0, n], np.int64),
        np.array([0, n_queues], np.int64), start, np.full(n, hop), np.zeros(n), np.zeros(n), np.zeros(n, bool),
        np.full(n, -1, np.int64), np.full(n, -1, np.int64), _NONE_I, _NONE_I, _NONE_I, _NONE_I, _NONE_F, _NONE_I,
        _NONE_I, _NONE_I, link_s)
    assert granted == n and early == 0
    return g, rel


def _by_hand(ready: np.ndarray, queue: np.ndarray, hop: float, link_s: float):
    """Each queue's users in (ready, flow) order: G = max(ready, previous release), release = G + max(L, hop)
    (a one-message flow's tail starts at its grant: hwmodels.timing.des, non-blocking channel)."""
    g, rel = np.full(len(ready), np.nan), np.full(len(ready), np.nan)
    for q in np.unique(queue):
        free = -np.inf
        for i in sorted(np.flatnonzero(queue == q), key=lambda i: (ready[i], i)):
            g[i] = max(ready[i], free)
            rel[i] = g[i] + max(link_s, hop)
            free = rel[i]
    return g, rel


def test_a_queue_of_many_waiting_flows_grants_in_request_then_flow_order():
    """12 flows on one queue, ready times out of order with ties (flows 1 and 3 at 1.0, 4, 8 and 10 at 5.0):
    every grant and release equals the hand computation, and grants follow (ready, flow) order."""
    ready = np.array([3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0, 6.0, 5.0, 3.0, 5.0, 8.0])
    queue = np.zeros(len(ready), np.int64)
    g, rel = _play_roots(ready, queue, 1, 1.0, 0.25)
    want_g, want_rel = _by_hand(ready, queue, 1.0, 0.25)
    assert np.array_equal(g, want_g) and np.array_equal(rel, want_rel)
    assert list(np.argsort(g, kind="stable")) == [1, 3, 6, 0, 9, 2, 4, 8, 10, 7, 11, 5]
    assert g[3] == 2.0 and g[5] == 12.0  # flow 3 waits behind flow 1; flow 5 (ready at 9) behind 11 holders


def test_several_queues_keep_their_own_waiting_orders():
    """40 flows with random ready times (many ties) on 3 queues, interleaved in node order: the same grants and
    releases as the hand computation on each queue, for several seeds."""
    for seed in range(5):
        rng = np.random.default_rng(seed)
        ready = rng.integers(0, 8, 40).astype(float)
        queue = rng.integers(0, 3, 40)
        g, rel = _play_roots(ready, queue, 3, 0.5, 0.75)
        want_g, want_rel = _by_hand(ready, queue, 0.5, 0.75)
        assert np.array_equal(g, want_g) and np.array_equal(rel, want_rel)
