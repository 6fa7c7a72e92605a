"""The plans of the compiled event engine (hwmodels.kernels.event_queue) built from the route table in one compiled
pass: for each (route tree, K) the arrays des_simpy._Plan makes in Python (K = (m - 1) // B capped at the tree's
depth: which descendants' grants bound a channel's tail, how many grants its release needs and which channels
each grant counts for), tree by tree in the same orders (children and roots ascending, terms by descendant,
dependents ascending), so the engine's results do not depend on which builder made them
(tests/hwmodels/test_event_engine.py compares the engine with the simpy engine, which uses des_simpy._Plan).
"""
from __future__ import annotations

import numpy as np
from numba import njit

from hwmodels.kernels.index import ux


@njit(cache=True)
def _deps(lo, n, k, parent, depth, blocking):
    """(up (n, n): depth[i] - depth[x] where channel i climbs to x through blocking channels only, else -1;
    dep (n, n) bool: dep[x, i] when the release of channel x needs the grant of i) of the tree at flat lo."""
    up = np.full((n, n), -1, np.int64)
    for i in range(n):
        x = parent[ux(lo + i)]
        while x >= 0 and blocking[ux(lo + x)]:
            up[i, x] = depth[ux(lo + i)] - depth[ux(lo + x)]
            x = parent[ux(lo + x)]
    dep = np.zeros((n, n), np.bool_)
    for x in range(n):
        dep[x, x] = True
        for i in range(n):
            if 0 <= up[i, x] <= k:
                dep[x, i] = True
        if blocking[ux(lo + x)]:
            for c in range(n):
                if parent[ux(lo + c)] == x:  # an end of x: its child, and the terms of that child
                    dep[x, c] = True
                    for i in range(n):
                        if 0 <= up[i, c] <= k:
                            dep[x, i] = True
    return up, dep


@njit(cache=True)
def plan_arrays(t_off, parent, depth, blocking, plan_tree, plan_k):
    """Plans of trees plan_tree (int64 (P,), indices into the route table laid out by t_off, with tree-local
    parent, depth and blocking per flat channel) with K = plan_k (int64 (P,)), as event_queue.play_steps takes
    them: (p_off, p_root_ptr, p_roots, flat channel of each plan channel (to read links, hop, before, blocking),
    count, child_ptr, child, term_ptr, term_i, term_up, dep_ptr, dep), tree-local indices, CSR over plans / plan
    channels."""
    n_p = len(plan_tree)
    p_off = np.zeros(n_p + 1, np.int64)
    for p in range(n_p):
        t = plan_tree[p]
        p_off[p + 1] = p_off[p] + t_off[t + 1] - t_off[t]
    total = p_off[n_p]
    flat = np.empty(total, np.int64)
    count = np.empty(total, np.int64)
    root_ptr = np.zeros(n_p + 1, np.int64)
    child_ptr, term_ptr, dep_ptr = np.zeros(total + 1, np.int64), np.zeros(total + 1, np.int64), \
        np.zeros(total + 1, np.int64)
    roots, child = np.empty(total, np.int64), np.empty(total, np.int64)
    term_i, term_up, dep = [np.empty(0, np.int64)] * 3
    for phase in range(2):  # 0: count the entries, 1: fill them
        if phase == 1:
            term_i, term_up = np.empty(term_ptr[total], np.int64), np.empty(term_ptr[total], np.int64)
            dep = np.empty(dep_ptr[total], np.int64)
        n_root = 0
        for p in range(n_p):
            t = plan_tree[p]
            lo, n, j0 = t_off[t], t_off[t + 1] - t_off[t], p_off[p]
            up, dm = _deps(lo, n, plan_k[p], parent, depth, blocking)
            for x in range(n):
                j = j0 + x
                flat[j] = lo + x
                nc = 0
                for c in range(n):
                    if parent[ux(lo + c)] == x:
                        if phase == 1:
                            child[child_ptr[j] + nc] = c
                        nc += 1
                nt = 0
                for i in range(n):
                    if 0 <= up[i, x] <= plan_k[p]:
                        if phase == 1:
                            term_i[term_ptr[j] + nt], term_up[term_ptr[j] + nt] = i, up[i, x]
                        nt += 1
                nd, cnt = 0, 0
                for y in range(n):  # channels whose release a grant of x counts for; grants x's release needs
                    if dm[y, x]:
                        if phase == 1:
                            dep[dep_ptr[j] + nd] = y
                        nd += 1
                    cnt += dm[x, y]
                count[j] = cnt
                if phase == 0:
                    child_ptr[j + 1], term_ptr[j + 1], dep_ptr[j + 1] = nc, nt, nd
                if parent[ux(lo + x)] < 0:
                    if phase == 1:
                        roots[n_root] = x
                    n_root += 1
            if phase == 0:
                root_ptr[p + 1] = n_root
        if phase == 0:
            child_ptr, term_ptr, dep_ptr = np.cumsum(child_ptr), np.cumsum(term_ptr), np.cumsum(dep_ptr)
    return p_off, root_ptr, roots[:root_ptr[n_p]], flat, count, child_ptr, child[:child_ptr[total]], term_ptr, \
        term_i, term_up, dep_ptr, dep
