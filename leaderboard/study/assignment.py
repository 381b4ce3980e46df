"""Trials and their server-side assignment to participants.

* :func:`build_trials` lists the trials (one per image, plus optional gold trials that pit the HR
  image against a bad candidate to catch careless voters).
* :func:`assign_trials` decides which trials a participant judges, in which order, and the order
  (and subset) of the candidates on screen, all drawn from a seeded RNG and recorded by the store,
  so a participant never chooses their trials and the positions of the methods are randomised
  per participant and trial.

Example:
    >>> trials = build_trials(config)                # doctest: +SKIP
    >>> plan = assign_trials(config, trials, participant_index=0, trial_load={}, seed=1234)  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from leaderboard.study.config import BICUBIC, HR, StudyConfig, StudyConfigError


@dataclass(frozen=True)
class TrialSpec:
    """One trial: an image and the candidates that may be shown for it.

    Attributes:
        position: index in the study's trial list (stable across runs).
        image_id: the image.
        candidates: candidate names (method names, or ``HR``/``BICUBIC`` for gold trials).
        gold_answer: the correct candidate of a gold trial, ``None`` for a regular trial.
    """

    position: int
    image_id: str
    candidates: tuple[str, ...]
    gold_answer: str | None = None

    @property
    def is_gold(self) -> bool:
        return self.gold_answer is not None


def build_trials(config: StudyConfig) -> list[TrialSpec]:
    """Regular trials (one per image, every method a candidate) followed by the gold trials."""
    trials = [TrialSpec(i, image_id, config.method_names) for i, image_id in enumerate(config.images)]
    if config.gold is not None:
        distractor = BICUBIC if config.gold.distractor == "bicubic" else config.gold.distractor
        for image_id in config.gold.images:
            trials.append(TrialSpec(len(trials), image_id, (HR, distractor), gold_answer=HR))
    return trials


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
    balanced as participants join. Gold trials are inserted at random places. The order of the
    candidates on screen is a fresh random permutation per participant and trial; with
    ``candidates_per_trial`` set, the shown subset favours the least-shown methods (``method_load``).

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
    gold = [t for t in trials if t.is_gold]
    k = config.votes_per_participant or len(regular)
    tiebreak = rng.random(len(regular))
    ranked = sorted(range(len(regular)), key=lambda i: (trial_load.get(regular[i].position, 0), tiebreak[i]))
    chosen = [regular[i] for i in ranked[:k]]
    rng.shuffle(chosen)
    if gold and config.gold is not None:
        picks = rng.choice(len(gold), size=config.gold.per_participant, replace=False)
        for g in sorted(int(p) for p in picks):
            chosen.insert(int(rng.integers(0, len(chosen) + 1)), gold[g])
    load = dict(method_load or {})
    plan: list[PlannedAssignment] = []
    for order, trial in enumerate(chosen):
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

