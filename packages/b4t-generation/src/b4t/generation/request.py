"""``GenerationRequest``: one completion to generate, the one request type of the package.

The HTTP routes build it (through :meth:`GenerationService.make_request
<b4t.generation.service.GenerationService.make_request>`, which adds the service's
limits), stream functions read it, and :meth:`BatchScheduler.submit
<b4t.generation.batching.BatchScheduler.submit>` builds one for every prompt it queues.
Its own checks (:meth:`GenerationRequest.__post_init__`) are the one place where a
request's values are validated; a bad value raises :class:`InvalidParameter` (a
``ValueError``) naming the field.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

__all__ = ["GenerationRequest", "InvalidParameter"]

_SEED_RANGE = 2**64  # seeds are 64-bit signed integers (torch's manual_seed wraps the same way)


class InvalidParameter(ValueError):
    """A request value out of range; ``param`` names the field (``'topk'``, ...)."""

    def __init__(self, message: str, param: str) -> None:
        super().__init__(message)
        self.param = param


@dataclass(frozen=True)
class GenerationRequest:
    """One completion to generate: what to continue and how to decode it.

    Checked on construction (:class:`InvalidParameter` names the field at fault).

    Attributes:
        prompt: the text to continue (``""`` when only ``prompt_ids`` are given).
        max_tokens: the most tokens to generate (>= 1).
        temperature: ``0`` means greedy; otherwise the sampling temperature (finite).
        topk: sample among the ``topk`` most probable tokens (``None``: all).
        topp: nucleus sampling mass in ``(0, 1]`` (``None``: off).
        seed: seeds the sampling of this request, a 64-bit signed integer (``None``:
            not reproducible).
        prompt_ids: the prompt's token ids, when known (the service encodes the prompt
            when it has a tokenizer).
        stop_ids: ids that end the generation (the stop id is not part of the output).
    """

    prompt: str = ""
    max_tokens: int = 64
    temperature: float = 1.0
    topk: int | None = None
    topp: float | None = None
    seed: int | None = None
    prompt_ids: tuple[int, ...] | None = None
    stop_ids: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        """Raise :class:`InvalidParameter` for a value out of range."""
        if int(self.max_tokens) < 1:
            raise InvalidParameter(f"max_tokens must be >= 1, got {self.max_tokens}", "max_tokens")
        if not (self.temperature >= 0 and math.isfinite(self.temperature)):
            raise InvalidParameter(
                f"temperature must be a finite number >= 0, got {self.temperature}", "temperature"
            )
        if self.topk is not None and int(self.topk) < 1:
            raise InvalidParameter(f"topk must be >= 1, got {self.topk}", "topk")
        if self.topp is not None and not 0 < self.topp <= 1:
            raise InvalidParameter(f"topp must be in (0, 1], got {self.topp}", "topp")
        if self.seed is not None and not -_SEED_RANGE // 2 <= self.seed < _SEED_RANGE // 2:
            raise InvalidParameter(f"seed must be a 64-bit signed integer, got {self.seed}", "seed")

    def choice(self, index: int) -> GenerationRequest:
        """The request for the ``index``-th of several completions: seed ``seed + index``
        (kept a 64-bit signed integer by wrapping, which seeds torch's generator alike)."""
        if self.seed is None or index == 0:
            return self
        seed = (self.seed + index + _SEED_RANGE // 2) % _SEED_RANGE - _SEED_RANGE // 2
        return replace(self, seed=seed)
