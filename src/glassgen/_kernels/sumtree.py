r"""B-ary sum tree (B = 8) over non-negative weights: O(log_B N) sampling proportional to the weights and
O(B log_B N) updates of one weight.

Used by the kinetic Monte Carlo of the trap models (:mod:`glassgen._kernels.kmc`: escape rates) and by
the biased particle selection of policy-guided MC (:mod:`glassgen._kernels.pgmc`: exp(theta . f_i)).
Node sums are always recomputed from their children, never updated by differences, so repeated updates
accumulate no round-off drift: the root equals the sum of the leaves to the last bit of a fresh build.

Layout: nodes stored level by level, root at 0, children of node j at B j + 1 ... B j + B, the M = B^D
leaves last (leaf i at node (M - 1)/(B - 1) + i); leaves beyond the n weights are 0 and never drawn.
"""

import numpy as np
from numba import njit

__all__ = ["TREE_B", "tree_size", "tree_total", "tree_build", "tree_set", "tree_set_leaves", "tree_sample",
           "tree_leaf"]


#: branching factor of the sum tree: the B children of a node are contiguous (8 float64 = one cache line),
#: so a descent or an update touches one cache line per level, log_B N levels (6 for N = 1e5 instead of 17)
TREE_B = 8


@njit(cache=True)
def tree_size(n):
    """Number of leaves M = TREE_B^D (D >= 1, the smallest with M >= n); the tree has (B M - 1)/(B - 1) nodes."""
    m = TREE_B
    while m < n:
        m *= TREE_B
    return m


@njit(cache=True)
def _first_leaf(tree):
    """Index of leaf 0: nodes are stored level by level, root at 0, children of j at B j + 1 ... B j + B."""
    return (tree.shape[0] - 1) // TREE_B


@njit(cache=True)
def tree_total(tree):
    """Sum of all rates (the root)."""
    return tree[0]


@njit(cache=True)
def _node_sum(tree, j):
    c = TREE_B * j + 1
    s = 0.0
    for k in range(TREE_B):
        s += tree[c + k]
    return s


@njit(cache=True)
def tree_build(rates):
    """B-ary sum tree of ``rates`` (N,): leaf i at first_leaf + i, node j holds the sum of its B children."""
    n = rates.shape[0]
    m = tree_size(n)
    first = (m - 1) // (TREE_B - 1)
    tree = np.zeros(first + m)
    for i in range(n):
        tree[first + i] = rates[i]
    for j in range(first - 1, -1, -1):
        tree[j] = _node_sum(tree, j)
    return tree


@njit(cache=True)
def tree_set(tree, i, rate):
    """Set leaf i to ``rate`` and recompute its ancestors (sums of children: no round-off drift)."""
    j = _first_leaf(tree) + i
    tree[j] = rate
    while j > 0:
        j = (j - 1) // TREE_B
        tree[j] = _node_sum(tree, j)


@njit(cache=True)
def tree_set_leaves(tree, leaves, rates, k):
    """Set leaves ``leaves[:k]`` to ``rates[:k]`` and recompute their ancestors once each.

    The ancestors are recomputed level by level; parents shared by adjacent entries of ``leaves`` are
    recomputed once (a facilitated event changes a site and its neighbours, which are close in index).
    ``leaves`` is overwritten. Correct for any order of ``leaves``; sorted order is the fast one.
    """
    first = _first_leaf(tree)
    for r in range(k):
        leaves[r] += first
        tree[leaves[r]] = rates[r]
    while leaves[0] > 0:
        w = 0
        prev = -1
        for r in range(k):
            p = (leaves[r] - 1) // TREE_B
            if p != prev:
                tree[p] = _node_sum(tree, p)
                leaves[w] = p
                w += 1
                prev = p
        k = w


@njit(cache=True)
def tree_sample(tree, u):
    """Leaf index chosen with probability rate_i / total for u uniform in [0, 1).

    At every level the children are scanned in order and the first one whose cumulative sum exceeds the
    target is taken; children with zero rate are never taken (if round-off exhausts the target, the last
    child with a positive rate is)."""
    first = _first_leaf(tree)
    target = u * tree[0]
    j = 0
    while j < first:
        c = TREE_B * j + 1
        best = c
        for k in range(TREE_B):
            v = tree[c + k]
            if v > 0.0:
                best = c + k
                if target < v:
                    break
                target -= v
        j = best
    return j - first



@njit(cache=True)
def tree_leaf(tree, i):
    """Weight of leaf i."""
    return tree[_first_leaf(tree) + i]
