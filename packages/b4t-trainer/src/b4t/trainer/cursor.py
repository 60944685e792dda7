"""``LoaderCursor``: the training position in a cycled dataloader, restorable exactly.

A shuffling ``DataLoader`` draws its permutation (and worker seeds) from the
RNG when an iterator is created and first advanced. The cursor records the
RNG states in force just before it creates each iterator (the global ones and
any explicit ``generator`` of the loader or its sampler) and counts the
batches that iterator has yielded. To restore, it puts those states back,
recreates the iterator, fetches and drops the counted batches; the caller
then restores the run's current RNG states. The batches that follow are the
ones an uninterrupted run would have seen.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import torch

from b4t.trainer.state import get_rng_state, set_rng_state


def _generators(loader: Any) -> list[torch.Generator]:
    """The explicit torch generators a DataLoader (or its sampler) draws from."""
    found: list[torch.Generator] = []
    for owner in (
        loader,
        getattr(loader, "sampler", None),
        getattr(getattr(loader, "batch_sampler", None), "sampler", None),
    ):
        gen = getattr(owner, "generator", None)
        if isinstance(gen, torch.Generator) and all(gen is not g for g in found):
            found.append(gen)
    return found


class LoaderCursor:
    """Yield batches from ``loader`` forever, re-iterating it when it runs out.

    Args:
        loader: any re-iterable of batches (usually a ``DataLoader``).
        on_wrap: called when the loader is exhausted, before it is re-iterated.
    """

    def __init__(self, loader: Iterable[Any], on_wrap: Callable[[], None] | None = None) -> None:
        self.loader = loader
        self.on_wrap = on_wrap
        self.iterator: Iterator[Any] | None = None
        self.consumed = 0  # batches yielded by the current iterator
        self.iterations = 0  # iterators created so far (the sampler's epoch)
        self._rng: dict[str, Any] | None = None
        self._gens: list[torch.Tensor] = []

    def _set_sampler_epoch(self, epoch: int) -> None:
        sampler = getattr(self.loader, "sampler", None)
        if hasattr(sampler, "set_epoch"):  # DistributedSampler reshuffles per epoch
            sampler.set_epoch(epoch)

    def _start(self) -> None:
        self._set_sampler_epoch(self.iterations)
        self._rng = get_rng_state()
        self._gens = [g.get_state() for g in _generators(self.loader)]
        self.iterator = iter(self.loader)
        self.consumed = 0
        self.iterations += 1

    def next(self) -> Any:
        """The next batch, wrapping around (and calling ``on_wrap``) at the end."""
        if self.iterator is None:
            self._start()
        assert self.iterator is not None
        try:
            batch = next(self.iterator)
        except StopIteration:
            if self.on_wrap is not None:
                self.on_wrap()
            self._start()
            try:
                batch = next(self.iterator)
            except StopIteration:
                raise ValueError("train_dataloader yielded no batches") from None
        self.consumed += 1
        return batch

    def skip(self, count: int) -> None:
        """Advance by ``count`` batches without returning them."""
        for _ in range(count):
            self.next()

    def state_dict(self) -> dict[str, Any] | None:
        """The RNG states the current iterator was created under and its position."""
        if self._rng is None:
            return None
        return {
            "rng": self._rng,
            "generators": list(self._gens),
            "consumed": self.consumed,
            "iterations": self.iterations,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Recreate the saved iterator and skip the batches it had yielded.

        Leaves the RNG states as they were when the saved iterator was
        created; the caller restores the run's own states afterwards.
        """
        self.iterations = state["iterations"]
        self._set_sampler_epoch(self.iterations - 1)
        set_rng_state(state["rng"])
        gens = _generators(self.loader)
        if len(gens) != len(state["generators"]):
            raise ValueError(
                f"the train_dataloader has {len(gens)} explicit generator(s), the checkpoint "
                f"{len(state['generators'])}; resume with the same loader"
            )
        for gen, gen_state in zip(gens, state["generators"]):
            gen.set_state(gen_state)
        self._rng, self._gens = state["rng"], list(state["generators"])
        self.iterator = iter(self.loader)
        for skipped in range(state["consumed"]):
            try:
                next(self.iterator)
            except StopIteration:
                raise RuntimeError(
                    f"the train_dataloader ran out after {skipped} batches while skipping the "
                    f"{state['consumed']} already trained on; resume with the same loader"
                ) from None
        self.consumed = state["consumed"]
