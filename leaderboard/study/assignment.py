"""Trials and their server-side assignment to participants.

* :func:`build_trials` lists a study's trials, by design: one per image (``best_of_n``,
  ``ranking``), one per image and pair of methods (``pairwise``), one per image and method
  (``acr``); then the gold trials that catch careless voters.
* :func:`assign_trials` decides which trials a participant judges, in which order, and the order
  (and subset) of the candidates on screen, all drawn from a seeded RNG and recorded by the store,
  so a participant never chooses their trials and the positions of the methods are randomised
  per participant and trial.
* :func:`bradley_terry` and :func:`adaptive_trial` are ``assignment: adaptive``: the next
  pairwise trial goes to the pair whose outcome is expected to tell the most about the current
  Bradley-Terry ranking, with a floor of uniform exploration, while every image stays covered.

Example:
    >>> trials = build_trials(config)                # doctest: +SKIP
    >>> plan = assign_trials(config, trials, participant_index=0, trial_load={}, seed=1234)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import combinations

import numpy as np

from leaderboard.study.config import BICUBIC, GOLD_HIGH, GOLD_LOW, HR, StudyConfig, StudyConfigError


@dataclass(frozen=True)
class TrialSpec:
    """One trial: an image and the candidates that may be shown for it.

    Attributes:
        position: index in the study's trial list (stable across runs).
        image_id: the image.
        candidates: candidate names (method names, or ``HR``/``BICUBIC`` for gold trials).
        gold_answer: what a gold trial expects, ``None`` for a regular trial: the candidate to
            choose or rank first (``HR``), or for ACR ``GOLD_HIGH`` / ``GOLD_LOW`` (the rating the
            one candidate shown must get).
    """

    position: int
    image_id: str
    candidates: tuple[str, ...]
    gold_answer: str | None = None

    @property
    def is_gold(self) -> bool:
        return self.gold_answer is not None


def _regular_candidates(config: StudyConfig) -> list[tuple[str, ...]]:
    """The candidate sets of one image's regular trials, by design."""
    methods = config.method_names
    if config.design == "pairwise":
        return list(combinations(methods, 2))
    if config.design == "acr":
        return [(m,) for m in methods]
    return [methods]


def build_trials(config: StudyConfig) -> list[TrialSpec]:
    """Regular trials (image-major, see the module docstring) followed by the gold trials.

    Gold trials pit the HR image against the distractor (the HR must be chosen, or ranked first);
    for ACR each gold image gives two one-candidate trials, the HR (to be rated ``GOLD_HIGH``) and
    the distractor (``GOLD_LOW``).
    """
    trials = [
        TrialSpec(0, image_id, cands) for image_id in config.images for cands in _regular_candidates(config)
    ]
    if config.gold is not None:
        distractor = BICUBIC if config.gold.distractor == "bicubic" else config.gold.distractor
        for image_id in config.gold.images:
            if config.design == "acr":
                trials += [TrialSpec(0, image_id, (HR,), GOLD_HIGH), TrialSpec(0, image_id, (distractor,), GOLD_LOW)]
            else:
                trials.append(TrialSpec(0, image_id, (HR, distractor), gold_answer=HR))
    return [TrialSpec(i, t.image_id, t.candidates, t.gold_answer) for i, t in enumerate(trials)]


def _gold_groups(trials: Sequence[TrialSpec]) -> list[list[TrialSpec]]:
    """Gold trials grouped by image (one trial per image, two for ACR), in trial order."""
    groups: dict[str, list[TrialSpec]] = {}
    for t in trials:
        if t.is_gold:
            groups.setdefault(t.image_id, []).append(t)
    return list(groups.values())


@dataclass(frozen=True)
class PlannedAssignment:
    """One trial as a participant will see it: its place in their sequence and the candidates' order."""

    order: int
    trial_position: int
    shown: tuple[str, ...]


def assign_trials(
    config: StudyConfig,
    trials: list[TrialSpec],
    participant_index: int,
    trial_load: dict[int, int],
    method_load: dict[str, int] | None = None,
    *,
    seed: int | None = None,
) -> list[PlannedAssignment]:
    """Server-side assignment of trials to one participant.

    Regular trials: the ``votes_per_participant`` least-assigned trials so far (``trial_load`` maps
    trial position -> participants already assigned; ties broken at random), so coverage stays
    balanced as participants join. Gold trials (``gold.per_participant`` gold images' trials) are
    inserted at random places. The order of the candidates on screen is a fresh random
    permutation per participant and trial; with ``candidates_per_trial`` set, the shown subset
    favours the least-shown methods (``method_load``).

    With ``assignment: adaptive`` only the gold trials are planned here: the regular ones are
    picked one at a time, when the participant reaches them (:func:`adaptive_trial`), at the
    orders this plan leaves free (``votes_per_participant`` of them; see :func:`plan_length`).

    The RNG is seeded by (study seed, participant index), so the plan is reproducible; the store
    records it, and the analysis uses what was recorded. The study seed is ``config.seed`` when the
    YAML fixes one, else ``seed`` (the secret seed the store drew when it created the study).

    Raises:
        StudyConfigError: neither ``config.seed`` nor ``seed`` is given.
    """
    study_seed = config.seed if config.seed is not None else seed
    if study_seed is None:
        raise StudyConfigError(
            f"study {config.name!r} fixes no seed: pass the secret seed the store drew for it (seed=...)"
        )
    rng = np.random.default_rng([study_seed, participant_index])
    regular = [t for t in trials if not t.is_gold]
    gold = _gold_groups(trials)
    k = config.votes_per_participant or len(regular)
    chosen: list[TrialSpec | None]
    if config.assignment == "adaptive":
        chosen = [None] * k  # slots filled when the participant reaches them
    else:
        tiebreak = rng.random(len(regular))
        ranked = sorted(range(len(regular)), key=lambda i: (trial_load.get(regular[i].position, 0), tiebreak[i]))
        chosen = [regular[i] for i in ranked[:k]]
        rng.shuffle(chosen)
    if gold and config.gold is not None:
        picks = rng.choice(len(gold), size=config.gold.per_participant, replace=False)
        for g in sorted(int(p) for p in picks):
            for gold_trial in gold[g]:
                chosen.insert(int(rng.integers(0, len(chosen) + 1)), gold_trial)
    load = dict(method_load or {})
    plan: list[PlannedAssignment] = []
    for order, slot in enumerate(chosen):
        if slot is None:
            continue
        trial = slot
        candidates = list(trial.candidates)
        size = config.candidates_per_trial
        if not trial.is_gold and size is not None and size < len(candidates):
            noise = dict(zip(candidates, rng.random(len(candidates)), strict=True))
            candidates = sorted(candidates, key=lambda m: (load.get(m, 0), noise[m]))[:size]
            for m in candidates:
                load[m] = load.get(m, 0) + 1
        shown = tuple(candidates[i] for i in rng.permutation(len(candidates)))
        plan.append(PlannedAssignment(order, trial.position, shown))
    return plan


def position_label(index: int) -> str:
    """Neutral label of the candidate at screen position ``index``: A, B, ..., Z, AA, ..."""
    label = ""
    index += 1
    while index:
        index, rem = divmod(index - 1, 26)
        label = chr(65 + rem) + label
    return label



def plan_length(config: StudyConfig, trials: Sequence[TrialSpec]) -> int:
    """How many trials each participant judges (regular plus gold)."""
    regular = sum(1 for t in trials if not t.is_gold)
    gold = _gold_groups(trials)
    per_gold = len(gold[0]) if gold else 0
    n_gold = config.gold.per_participant * per_gold if config.gold is not None and gold else 0
    return (config.votes_per_participant or regular) + n_gold


# --------------------------------------------------------------------------- adaptive assignment


@dataclass(frozen=True)
class BTPosterior:
    """A Bradley-Terry fit with its Laplace (Gaussian) approximation.

    Attributes:
        strength: log-strengths ``theta`` (shape ``(M,)``, mean 0); ``P(i beats j) =
            1 / (1 + exp(theta_j - theta_i))``.
        cov: covariance of ``theta`` (shape ``(M, M)``): the inverse of the log-posterior's Hessian
            at the fit, ``sum_ij n_ij p_ij (1 - p_ij) (e_i - e_j)(e_i - e_j)^T + alpha I``.
    """

    strength: np.ndarray
    cov: np.ndarray

    def diff_sd(self, i: int, j: int) -> float:
        """Standard deviation of ``theta_i - theta_j``."""
        return float(np.sqrt(max(self.cov[i, i] + self.cov[j, j] - 2 * self.cov[i, j], 0.0)))


def bradley_terry(n_items: int, wins: np.ndarray, alpha: float = 0.1, max_newton: int = 50) -> BTPosterior:
    """Maximum a posteriori Bradley-Terry strengths and their Laplace covariance.

    The log-posterior is ``sum_ij wins_ij log sigma(theta_i - theta_j) - alpha / 2 |theta|^2`` (a
    Gaussian prior of precision ``alpha``, which also makes the estimate exist when a method never
    wins). It is started from ``choix.ilsr_pairwise_dense`` (Maystre & Grossglauser 2015) and
    refined to the mode by Newton steps, whose Hessian is then the Laplace approximation's
    precision (the covariance is its inverse).

    Args:
        n_items: number of methods ``M``.
        wins: ``(M, M)`` array, ``wins[i, j]`` = times ``i`` beat ``j`` (a tie counts 0.5 each way).
        alpha: prior precision.
    """
    import choix

    wins = np.asarray(wins, dtype=float)
    n = wins + wins.T
    theta = choix.ilsr_pairwise_dense(wins, alpha=1e-3) if wins.sum() > 0 else np.zeros(n_items)

    def precision(t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        p = 1.0 / (1.0 + np.exp(-(t[:, None] - t[None, :])))  # P(i beats j)
        w = n * p * (1.0 - p)
        grad = (wins - n * p).sum(axis=1) - alpha * t
        return np.diag(w.sum(axis=1)) - w + alpha * np.eye(n_items), grad

    for _ in range(max_newton):
        hessian, grad = precision(theta)
        step = np.linalg.solve(hessian, grad)
        theta = theta + step
        if np.abs(step).max() < 1e-10:
            break
    hessian, _ = precision(theta)
    return BTPosterior(theta, np.linalg.inv(hessian))


def expected_information(post: BTPosterior, i: int, j: int) -> float:
    """How much one comparison of ``i`` and ``j`` is expected to shrink ``Var(theta_i - theta_j)``.

    Under the Laplace approximation a comparison adds ``p (1 - p)`` along ``e_i - e_j`` to the
    precision, so the variance of the difference shrinks by about ``p (1 - p) Var(d)^2`` for small
    updates; relative to ``Var(d)`` that is ``p (1 - p) Var(d)``: largest for pairs that are both
    close (``p`` near 1/2) and uncertain.
    """
    d = post.strength[i] - post.strength[j]
    p = 1.0 / (1.0 + np.exp(-d))
    return float(p * (1.0 - p) * post.diff_sd(i, j) ** 2)


def choose_pair(
    post: BTPosterior,
    pairs: Sequence[tuple[int, int]],
    pair_load: Sequence[int],
    rng: np.random.Generator,
    exploration: float,
    top_k: int | None = None,
    z: float = 1.96,
) -> int:
    """Index into ``pairs`` of the next pair to compare.

    With probability ``exploration`` (and whenever no pair qualifies) the least-compared pair
    (``pair_load``), ties at random: uniform coverage. Otherwise, among the pairs whose 95%
    intervals overlap (``|theta_i - theta_j| < z * sd``) and, with ``top_k``, that involve a method
    of the current top ``top_k``, the one with the highest :func:`expected_information`.
    """
    load = np.asarray(pair_load, dtype=float)
    if len(pairs) == 0:
        raise ValueError("no pair left to compare")
    if rng.random() >= exploration:
        order = np.argsort(-post.strength, kind="stable")
        rank = np.empty(len(order), dtype=int)
        rank[order] = np.arange(len(order))
        scores = np.full(len(pairs), -1.0)
        for k, (i, j) in enumerate(pairs):
            if top_k is not None and min(rank[i], rank[j]) >= top_k:
                continue
            if abs(post.strength[i] - post.strength[j]) < z * post.diff_sd(i, j):
                scores[k] = expected_information(post, i, j)
        if scores.max() >= 0:
            return int(rng.choice(np.flatnonzero(scores >= scores.max() * (1 - 1e-9))))
    return int(rng.choice(np.flatnonzero(load == load.min())))


def adaptive_trial(
    config: StudyConfig,
    trials: Sequence[TrialSpec],
    comparisons: Iterable[tuple[str, str, str | None]],
    trial_load: dict[int, int],
    seen: set[int],
    rng: np.random.Generator,
) -> TrialSpec:
    """The next regular trial of an adaptive pairwise study for one participant.

    Args:
        trials: the study's trials (:func:`build_trials`).
        comparisons: every regular pairwise vote so far as ``(method_a, method_b, winner)``
            (``winner`` ``None`` for "no preference", counted as half a win each way).
        trial_load: trial position -> times assigned so far (every participant).
        seen: trial positions this participant already has (never shown twice).
        rng: the assignment RNG.

    Returns:
        The trial: the pair from :func:`choose_pair`, and for that pair the image whose trial was
        assigned least (every image stays covered).

    Raises:
        StudyConfigError: the participant has seen every trial already.
    """
    methods = list(config.method_names)
    index = {m: i for i, m in enumerate(methods)}

    def pair_of(t: TrialSpec) -> tuple[int, int]:
        i, j = sorted(index[m] for m in t.candidates)
        return i, j

    by_pair: dict[tuple[int, int], list[TrialSpec]] = {}
    for t in trials:
        if not t.is_gold and t.position not in seen:
            by_pair.setdefault(pair_of(t), []).append(t)
    if not by_pair:
        raise StudyConfigError(f"study {config.name!r}: this participant has judged every trial already")
    wins = np.zeros((len(methods), len(methods)))
    for first, second, winner in comparisons:
        if first not in index or second not in index:
            continue  # a gold trial's candidates
        i, j = index[first], index[second]
        if winner is None:
            wins[i, j] += 0.5
            wins[j, i] += 0.5
        elif winner == first:
            wins[i, j] += 1
        elif winner == second:
            wins[j, i] += 1
    post = bradley_terry(len(methods), wins)
    loads: dict[tuple[int, int], int] = {}
    for t in trials:
        if not t.is_gold:
            loads[pair_of(t)] = loads.get(pair_of(t), 0) + trial_load.get(t.position, 0)
    pairs = sorted(by_pair)
    pair_load = [loads.get(pair, 0) for pair in pairs]
    pair = pairs[choose_pair(post, pairs, pair_load, rng, config.adaptive.exploration, config.adaptive.top_k)]
    options = by_pair[pair]
    image_load = np.array([trial_load.get(t.position, 0) for t in options])
    return options[int(rng.choice(np.flatnonzero(image_load == image_load.min())))]


def shown_order(trial: TrialSpec, rng: np.random.Generator) -> tuple[str, ...]:
    """The candidates of ``trial`` in a random screen order."""
    return tuple(trial.candidates[i] for i in rng.permutation(len(trial.candidates)))
