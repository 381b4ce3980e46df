"""The released VOSR checkpoints: one table, the source of every release tag.

Each entry names the released run folder (``VOSR_0.5B_ms/args.json`` +
``checkpoints/ema_model.safetensors``, published at https://huggingface.co/CSWRY/VOSR and
ModelScope ``LULALULALU/VOSR_CKPT``), the model size it is (``vosr.config.MODEL_SIZES``) and
whether it is the distilled one-step student. The benchmark's VOSR method names, the weight-file
catalogue and ``-c TAG`` of ``screensr vosr infer`` all read this table. It imports nothing
heavier than ``vosr.config``, so listings stay instant.

Example:
    >>> get_release("vosr-0.5b-os").folder, get_release("vosr-0.5b-os").model_config().one_step
    ('VOSR_0.5B_os', True)
"""

from __future__ import annotations

from dataclasses import dataclass

from vosr.config import ModelConfig, UnknownEntryError, model_config

__all__ = ["Release", "RELEASES", "get_release", "HF_VOSR"]

HF_VOSR = "https://huggingface.co/CSWRY/VOSR/resolve/main/{}"


@dataclass(frozen=True)
class Release:
    """One released checkpoint.

    Attributes:
        tag: the name users give (``vosr-0.5b-ms``); the benchmark method of the same name.
        folder: the released run folder's name (under ``$SCREENSR_HOME/vosr`` or ``--weights-dir``).
        model: the size in ``vosr.config.MODEL_SIZES``.
        one_step: the distilled one-step student (else the multi-step teacher).
    """

    tag: str
    folder: str
    model: str
    one_step: bool

    @property
    def kind(self) -> str:
        """``one-step (distilled)`` or ``multi-step``, for listings."""
        return "one-step (distilled)" if self.one_step else "multi-step"

    def model_config(self) -> ModelConfig:
        """The backbone config the released ``args.json`` and weights describe."""
        return model_config(self.model, one_step=self.one_step)


RELEASES: dict[str, Release] = {
    r.tag: r
    for r in (
        Release("vosr-0.5b-ms", "VOSR_0.5B_ms", "vosr-0.5b", one_step=False),
        Release("vosr-0.5b-os", "VOSR_0.5B_os", "vosr-0.5b", one_step=True),
        Release("vosr-1.4b-ms", "VOSR_1.4B_ms", "vosr-1.4b", one_step=False),
        Release("vosr-1.4b-os", "VOSR_1.4B_os", "vosr-1.4b", one_step=True),
    )
}


def get_release(tag: str) -> Release:
    """The release ``tag`` (a "did you mean" error for unknown tags)."""
    if tag not in RELEASES:
        raise UnknownEntryError("VOSR release", tag, RELEASES)
    return RELEASES[tag]
