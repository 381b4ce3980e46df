"""Adaptive vs uniform pairwise assignment: votes needed to know the top-3 order with 95% confidence.

Run: ``python tests/perf/bench_adaptive.py [--repeats 30] [--check-every 10]`` (with the checkout
installed, ``pip install -e .``, or ``PYTHONPATH=.``).

Simulation: 8 methods with known Bradley-Terry log-strengths ``TRUE`` (gaps of 0.25 at the top,
so the top-3 order takes thousands of votes to establish); each simulated vote compares one pair
and the first method wins with probability ``1 / (1 + exp(theta_b - theta_a))`` (a voter drawn
from the BT model). The pair comes from

* ``uniform``: the least-compared pair so far, ties at random (what uniform assignment does with
  pairwise trials: least-assigned first);
* ``adaptive``: the product's rule, :func:`leaderboard.study.assignment.choose_pair` on the
  product's :func:`leaderboard.study.assignment.bradley_terry` posterior after every vote, with
  the default exploration (0.1), for ``top_k: 3`` (a study that asks for the top-3 order) and for
  the whole ranking (``top_k`` unset).

Every ``--check-every`` votes both arms apply the same stopping rule to the same posterior fit:
the estimated top three are the true top three in the true order, and each of the differences
1-2, 2-3 and 3-j (every j below the third) is more than 1.96 of its standard deviations from zero.
Printed: median votes needed and its interquartile range per arm, and the per-repetition ratio
adaptive/uniform (same seed for the voters' randomness in both arms) as a median with a 95%
bootstrap interval. The goal is a ratio of at most 0.6.
"""

from __future__ import annotations

import argparse
import os
import time
from itertools import combinations

import numpy as np

TRUE = np.array([1.0, 0.75, 0.5, 0.3, 0.15, 0.0, -0.2, -0.4])


def confident(post, top: int = 3, z: float = 1.96) -> bool:
    """The stopping rule: the top ``top`` order is the true one and every difference it rests on is significant."""
    order = list(np.argsort(-post.strength, kind="stable"))
    if order[:top] != list(range(top)):
        return False
    needed = [(k, k + 1) for k in range(top - 1)] + [(top - 1, j) for j in range(top, len(TRUE))]
    return all(post.strength[a] - post.strength[b] > z * post.diff_sd(a, b) for a, b in needed)


def run(mode: str, seed: int, check_every: int, max_votes: int, top_k: int | None, exploration: float) -> int:
    """Votes until :func:`confident` holds (``max_votes`` if never)."""
    from leaderboard.study.assignment import bradley_terry, choose_pair

    m = len(TRUE)
    pairs = list(combinations(range(m), 2))
    wins = np.zeros((m, m))
    load = np.zeros(len(pairs))
    voters = np.random.default_rng([seed, 0])  # the same voters' randomness in both arms
    picker = np.random.default_rng([seed, 1])
    post = bradley_terry(m, wins)
    for votes in range(1, max_votes + 1):
        if mode == "uniform":
            k = int(picker.choice(np.flatnonzero(load == load.min())))
        else:
            k = choose_pair(post, pairs, load, picker, exploration, top_k)
        a, b = pairs[k]
        load[k] += 1
        if voters.random() < 1.0 / (1.0 + np.exp(TRUE[b] - TRUE[a])):
            wins[a, b] += 1
        else:
            wins[b, a] += 1
        if mode != "uniform" or votes % check_every == 0:
            post = bradley_terry(m, wins)
        if votes % check_every == 0 and confident(post):
            return votes
    return max_votes


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--check-every", type=int, default=10)
    ap.add_argument("--max-votes", type=int, default=40_000)
    ap.add_argument("--exploration", type=float, default=0.1)
    args = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    t0 = time.perf_counter()
    arms = {"uniform": ("uniform", None), "adaptive, top_k: 3": ("adaptive", 3), "adaptive, whole ranking": ("adaptive", None)}
    needed = {
        name: np.array([run(mode, r, args.check_every, args.max_votes, top_k, args.exploration)
                        for r in range(args.repeats)])
        for name, (mode, top_k) in arms.items()
    }  # fmt: skip
    rng = np.random.default_rng(0)
    print(f"\nVotes to know the top-3 order of {len(TRUE)} methods with 95% confidence ({args.repeats} repetitions, "
          f"checked every {args.check_every} votes, exploration {args.exploration})")  # fmt: skip
    print(f"{'assignment':26s} {'median':>7s} {'IQR':>13s} {'ratio':>6s} {'95% CI':>13s} {'capped':>6s}")
    base = needed["uniform"]
    for name, votes in needed.items():
        q1, q3 = np.percentile(votes, [25, 75])
        ratio = votes / base
        boot = [np.median(rng.choice(ratio, len(ratio))) for _ in range(2000)]
        lo, hi = np.percentile(boot, [2.5, 97.5])
        print(f"{name:26s} {np.median(votes):7.0f} {q1:6.0f}-{q3:<6.0f} {np.median(ratio):6.2f} "
              f"{lo:6.2f}-{hi:<6.2f} {int((votes >= args.max_votes).sum()):6d}")  # fmt: skip
    goal = np.median(needed["adaptive, top_k: 3"] / base)
    print(f"goal (adaptive, top_k: 3, needs <= 0.6x the votes of uniform): {'met' if goal <= 0.6 else 'NOT met'} "
          f"({goal:.2f}x); {time.perf_counter() - t0:.0f} s")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
