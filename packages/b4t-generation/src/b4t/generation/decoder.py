"""``AutoRegressiveDecoder``: the bert4keras/bert4torch decoding contract, batched.

Subclass it and write ``predict(self, inputs, output_ids, states)`` decorated
by :meth:`AutoRegressiveDecoder.wraps`:

- ``inputs``: the list of input tensors given to the search, each with a
  leading row dim ``(rows, ...)`` that the decoder keeps aligned with the
  beams/samples (rows are repeated, reordered and dropped for you);
- ``output_ids``: ``(rows, length)`` ids generated so far (starting with
  ``start_id`` when it is not ``None``);
- ``states``: whatever the previous call returned (``None`` at the first
  step); with ``use_states=True`` ``predict`` returns ``(scores, states)`` and
  the states are row-selected like ``inputs`` (see :mod:`b4t.generation.states`),
  so a KV cache stays valid through beam search and sampling.

``scores`` is ``(rows, vocab)``: probabilities when ``default_rtype='probas'``,
unnormalised logits when ``'logits'``. The temperature is applied as in the
seed: ``softmax(logits / T)`` or ``probas ** (1 / T)`` renormalised.

Differences from the seed, all additive: a batch of independent inputs is
decoded together (``batch_beam_search`` / ``batch_random_sample``), states are
kept aligned with the rows, ``stream_*`` generators yield partial outputs,
``repetition_penalty`` is available, and ``minlen`` forbids ``end_id`` until
``minlen`` tokens (counting the end token) have been generated.

With b4t-models loaded, every search keeps a prefix store (see
:mod:`b4t.models.prefix_reuse`) active around its ``predict`` calls: a seed-style
``predict`` that feeds the whole sequence to a b4t causal model each step (``lm`` /
``unilm`` encoders, decoder LMs, seq2seq decoders) then runs only the new token over a KV
cache the model keeps for the search, with the same outputs. ``reuse_prefixes = False``
(on the class or an instance) turns it off.
"""

from __future__ import annotations

import contextlib
import functools
import sys
from collections.abc import Callable, Generator, Iterator, Sequence
from typing import Any

import numpy as np
import torch

from b4t.generation.beams import Beams
from b4t.generation.filters import apply_repetition_penalty, top_k_filter, top_p_filter
from b4t.generation.samples import Samples

__all__ = ["AutoRegressiveDecoder"]

_RTYPES = ("probas", "logits")


def _run(gen: Generator[Any, None, Any]) -> Any:
    """Exhaust a step generator and return its ``return`` value."""
    while True:
        try:
            next(gen)
        except StopIteration as stop:
            return stop.value


def _split_prediction(result: Any, use_states: bool) -> tuple[Any, Any]:
    """``(scores, states)`` from what a raw ``predict`` returned."""
    if not use_states:
        return result, None
    if not (isinstance(result, tuple | list) and len(result) == 2):
        raise TypeError(
            "predict wrapped with use_states=True must return (scores, states), "
            f"got {type(result).__name__}"
        )
    return result[0], result[1]


def _convert_scores(
    scores: torch.Tensor, default_rtype: str, rtype: str, temperature: float
) -> torch.Tensor:
    """``(rows, vocab)`` scores of kind ``default_rtype`` at ``temperature`` as ``rtype``:
    probabilities (``'probas'``) or log-probabilities (``'logits'``)."""
    if scores.dim() != 2:
        raise ValueError(
            f"predict must return scores of shape (rows, vocab), got {tuple(scores.shape)}"
        )
    if default_rtype == "logits":
        if temperature != 1:
            scores = scores / temperature
        log_probas = torch.log_softmax(scores, dim=-1)
        return log_probas if rtype == "logits" else log_probas.exp()
    probas = scores
    if temperature != 1:
        probas = probas.pow(1.0 / temperature)
        probas = probas / probas.sum(dim=-1, keepdim=True)
    return probas if rtype == "probas" else torch.log(probas + 1e-12)


def _check_sample_options(n: int, topk: int | None, topp: float | None) -> None:
    if int(n) < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if topk is not None and int(topk) < 1:
        raise ValueError(f"topk must be >= 1, got {topk}")
    if topp is not None and not 0 < topp <= 1:
        raise ValueError(f"topp must be in (0, 1], got {topp}")


def _prefix_store(enabled: bool, max_steps: int) -> Any:
    """A fresh ``b4t.models.prefix_reuse.PrefixStore`` for a search of at most
    ``max_steps`` steps when b4t-models is loaded (its models are the only ones that look
    for it) and ``enabled``, else None."""
    module = sys.modules.get("b4t.models.prefix_reuse") if enabled else None
    return None if module is None else module.PrefixStore(max_steps=max_steps)


class AutoRegressiveDecoder:
    """Beam search and random sampling around a user ``predict``.

    Args:
        start_id: id put first in every output, or ``None`` to start empty.
        end_id: id that ends a sequence, or ``None`` to always run ``maxlen`` steps.
        maxlen: the most tokens to generate.
        minlen: the fewest tokens to generate, counting the end token.
        device: where ``output_ids`` and the inputs are placed.

    Attributes:
        reuse_prefixes: keep b4t models' prefix store active around ``predict`` during a
            search (default True; see the module docstring).
    """

    reuse_prefixes = True

    def __init__(
        self,
        start_id: int | None,
        end_id: int | None,
        maxlen: int,
        minlen: int = 1,
        device: str | torch.device = "cpu",
    ) -> None:
        if int(maxlen) < 1:
            raise ValueError(f"maxlen must be >= 1, got {maxlen}")
        if int(minlen) < 0:
            raise ValueError(f"minlen must be >= 0, got {minlen}")
        self.start_id = start_id
        self.end_id = end_id
        self.maxlen = int(maxlen)
        self.minlen = int(minlen)
        self.device = torch.device(device)
        if start_id is None:
            self.first_output_ids = torch.empty((1, 0), dtype=torch.long, device=self.device)
        else:
            self.first_output_ids = torch.tensor([[start_id]], dtype=torch.long, device=self.device)

    # ------------------------------------------------------------------ predict

    @staticmethod
    def wraps(
        default_rtype: str = "probas", use_states: bool = False
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Decorate ``predict(self, inputs, output_ids, states)``.

        The decorated method takes ``(inputs, output_ids, states, temperature=1,
        rtype=default_rtype)`` and returns ``(scores, states)`` where ``scores``
        is ``(rows, vocab)`` probabilities (``rtype='probas'``) or
        log-probabilities (``rtype='logits'``).

        Args:
            default_rtype: what the raw ``predict`` returns: ``'probas'`` or ``'logits'``.
            use_states: the raw ``predict`` returns ``(scores, states)``.
        """
        if default_rtype not in _RTYPES:
            raise ValueError(f"default_rtype must be one of {_RTYPES}, got {default_rtype!r}")

        def decorator(predict: Callable[..., Any]) -> Callable[..., Any]:
            @functools.wraps(predict)
            def new_predict(
                self: AutoRegressiveDecoder,
                inputs: list[torch.Tensor],
                output_ids: torch.Tensor,
                states: Any,
                temperature: float = 1,
                rtype: str = default_rtype,
            ) -> tuple[torch.Tensor, Any]:
                if rtype not in _RTYPES:
                    raise ValueError(f"rtype must be one of {_RTYPES}, got {rtype!r}")
                if temperature <= 0:
                    raise ValueError(f"temperature must be > 0, got {temperature}")
                result = predict(self, inputs, output_ids, states)
                scores, new_states = _split_prediction(result, use_states)
                scores = torch.as_tensor(scores, device=self.device).float()
                return _convert_scores(scores, default_rtype, rtype, temperature), new_states

            new_predict.use_states = use_states  # type: ignore[attr-defined]
            new_predict.default_rtype = default_rtype  # type: ignore[attr-defined]
            return new_predict

        return decorator

    def predict(
        self, inputs: list[torch.Tensor], output_ids: torch.Tensor, states: Any = None
    ) -> Any:
        """Score the next token; override and decorate with :meth:`wraps`."""
        raise NotImplementedError("subclass AutoRegressiveDecoder and write a wrapped predict")

    # ------------------------------------------------------------------ inputs

    def _to_tensor(self, value: Any, add_btz_dim: bool) -> torch.Tensor:
        """``value`` on the decoder's device; ``add_btz_dim`` adds a batch dim of 1 to
        lists, tuples and arrays only: a tensor keeps its shape (0.2.5's rule, so an
        ``encoder.predict`` output ``(1, L, H)`` goes in as it is)."""
        if isinstance(value, torch.Tensor):
            return value.to(self.device)
        if isinstance(value, np.ndarray):
            tensor = torch.as_tensor(value, device=self.device)
        elif isinstance(value, list | tuple):
            try:  # like the seed's torch.tensor(...): Python floats become float32
                tensor = torch.tensor(value, device=self.device)
            except (ValueError, TypeError) as exc:
                raise ValueError(
                    "an input is a ragged list; pad it to one length before decoding"
                ) from exc
        else:
            raise TypeError(
                "decoder inputs must be tensors, arrays, lists or tuples, "
                f"got {type(value).__name__}"
            )
        return tensor.unsqueeze(0) if add_btz_dim else tensor

    def _batch_inputs(self, inputs: Sequence[Any], add_btz_dim: bool) -> list[torch.Tensor]:
        tensors = [self._to_tensor(value, add_btz_dim) for value in inputs]
        sizes = {t.shape[0] for t in tensors if t.dim() > 0}
        if any(t.dim() == 0 for t in tensors):
            raise ValueError("every decoder input needs a leading batch dim")
        if len(sizes) > 1:
            raise ValueError(f"decoder inputs disagree on the batch size: {sorted(sizes)}")
        return tensors

    # ------------------------------------------------------------------ scores

    def _mask_end(self, scores: torch.Tensor, step: int, fill: float) -> torch.Tensor:
        """Forbid ``end_id`` while fewer than ``minlen`` tokens would be generated."""
        if self.end_id is not None and step + 1 < self.minlen:
            scores = scores.clone()
            scores[:, self.end_id] = fill
        return scores

    def _check_predict(self) -> None:
        if not hasattr(self.predict, "use_states"):
            raise TypeError(
                f"{type(self).__name__}.predict must be decorated with "
                "@AutoRegressiveDecoder.wraps(default_rtype=..., use_states=...)"
            )

    def _generated(self, output_ids: torch.Tensor) -> torch.Tensor:
        return output_ids[:, self.first_output_ids.shape[1] :]

    # ------------------------------------------------------------------ the search core

    def _search(
        self,
        search: str,
        inputs: Sequence[Any],
        batched: bool,
        add_btz_dim: bool,
        stream: bool,
        **options: Any,
    ) -> Any:
        """The one search core behind the six public entry points.

        Args:
            search: ``'beam'`` (:meth:`_beam_steps`) or ``'sample'`` (:meth:`_sample_steps`).
            inputs: the model inputs as given to the entry point.
            batched: the inputs hold a batch of independent problems (``batch_*``); else
                one problem, whose single result is returned.
            add_btz_dim: give lists, tuples and arrays a batch dim of 1.
            stream: return an iterator of the current results after every step.
            **options: the search's own arguments (``topk``, ``states``, ...).

        Returns:
            The results (per problem when ``batched``), or an iterator of them.
        """
        tensors = self._batch_inputs(inputs, add_btz_dim)
        if search == "beam" and not batched:
            self._check_single(tensors)
        problems = (tensors[0].shape[0] if tensors else 1) if batched else 1
        run_steps = self._beam_steps if search == "beam" else self._sample_steps
        steps = run_steps(tensors, problems, stream, **options)
        if stream:
            return (current if batched else current[0] for current in steps)
        results = _run(steps)
        return results if batched else results[0]

    @staticmethod
    def _check_single(inputs: list[torch.Tensor]) -> None:
        if inputs and inputs[0].shape[0] != 1:
            raise ValueError(
                f"beam_search decodes one input but got a batch of {inputs[0].shape[0]}; "
                "use batch_beam_search"
            )

    # ------------------------------------------------------------------ beam search

    def _beam_steps(
        self,
        inputs: list[torch.Tensor],
        batch_size: int,
        stream: bool,
        topk: int,
        states: Any,
        temperature: float,
        min_ends: int,
        repetition_penalty: float,
    ) -> Generator[list[torch.Tensor], None, list[torch.Tensor]]:
        """Beam search over ``batch_size`` independent problems (see :class:`Beams`).

        Each step yields (only when ``stream``) the current best sequence of every
        problem; the last item yielded and the return value hold the final ones.
        """
        self._check_predict()
        if int(topk) < 1:
            raise ValueError(f"topk must be >= 1, got {topk}")
        beams = Beams.start(self.first_output_ids, batch_size, topk, inputs, states)
        store = _prefix_store(self.reuse_prefixes, self.maxlen)
        for step in range(self.maxlen):
            with store or contextlib.nullcontext():
                scores, beams.states = self.predict(
                    beams.inputs, beams.output_ids, beams.states, temperature, "logits"
                )
            if repetition_penalty != 1:
                scores = apply_repetition_penalty(
                    scores, self._generated(beams.output_ids), repetition_penalty
                )
            beams.extend(self._mask_end(scores, step, -float("inf")))
            del scores  # (rows, vocab): not alive during the next predict
            if self.end_id is not None:
                beams.retire_finished(self.end_id, min_ends)
            if not beams.groups:
                break
            if stream and step + 1 < self.maxlen:
                yield beams.best()
        final = beams.final()
        yield final
        return final

    def beam_search(
        self,
        inputs_raw: Sequence[Any],
        topk: int,
        states: Any = None,
        temperature: float = 1,
        min_ends: int = 1,
        add_btz_dim: bool = True,
        *,
        repetition_penalty: float = 1.0,
    ) -> torch.Tensor:
        """Beam search for one input; returns the best ``(length,)`` id sequence.

        Args:
            inputs_raw: the model inputs; lists, tuples and arrays get a batch dim
                of 1 when ``add_btz_dim``; tensors keep their shape (``(1, ...)``).
            topk: the beam width.
            states: initial states given to the first ``predict`` call.
            temperature: softens (>1) or sharpens (<1) the distribution.
            min_ends: how many ``end_id`` a sequence needs to count as finished.
            repetition_penalty: see :func:`b4t.generation.apply_repetition_penalty`.
        """
        return self._search(
            "beam", inputs_raw, False, add_btz_dim, False, topk=topk, states=states,
            temperature=temperature, min_ends=min_ends, repetition_penalty=repetition_penalty,
        )  # fmt: skip

    def stream_beam_search(
        self,
        inputs_raw: Sequence[Any],
        topk: int,
        states: Any = None,
        temperature: float = 1,
        min_ends: int = 1,
        add_btz_dim: bool = True,
        *,
        repetition_penalty: float = 1.0,
    ) -> Iterator[torch.Tensor]:
        """Like :meth:`beam_search`, yielding the current best sequence after each step.

        The last item yielded is what :meth:`beam_search` returns.
        """
        yield from self._search(
            "beam", inputs_raw, False, add_btz_dim, True, topk=topk, states=states,
            temperature=temperature, min_ends=min_ends, repetition_penalty=repetition_penalty,
        )  # fmt: skip

    def batch_beam_search(
        self,
        inputs: Sequence[Any],
        topk: int,
        states: Any = None,
        temperature: float = 1,
        min_ends: int = 1,
        *,
        repetition_penalty: float = 1.0,
    ) -> list[torch.Tensor]:
        """Beam search for a batch of independent inputs, decoded together.

        Args:
            inputs: model inputs, each with a leading batch dim ``(batch, ...)``
                (pad variable-length inputs yourself).
            states: initial states with ``batch`` rows, or ``None``.

        Returns:
            ``batch`` id sequences, each what :meth:`beam_search` would return
            for that input alone.
        """
        return self._search(
            "beam", inputs, True, False, False, topk=topk, states=states,
            temperature=temperature, min_ends=min_ends, repetition_penalty=repetition_penalty,
        )  # fmt: skip

    # ------------------------------------------------------------------ sampling

    def _sample_steps(
        self,
        inputs: list[torch.Tensor],
        batch_size: int,
        stream: bool,
        n: int,
        topk: int | None,
        topp: float | None,
        states: Any,
        temperature: float,
        min_ends: int,
        repetition_penalty: float,
        generator: torch.Generator | None,
    ) -> Generator[list[list[torch.Tensor]], None, list[list[torch.Tensor]]]:
        """Draw ``n`` samples for each of ``batch_size`` problems.

        Each step yields (only when ``stream``) every sample's current ids per
        problem; the return value holds, per problem, finished samples in the
        order they finished followed by the unfinished ones.
        """
        self._check_predict()
        _check_sample_options(n, topk, topp)
        rows = Samples(
            problems=batch_size,
            n=n,
            output_ids=self.first_output_ids.repeat(batch_size, 1),
            slots=torch.arange(batch_size, device=self.device),
            inputs=inputs,
            states=states,
        )
        store = _prefix_store(self.reuse_prefixes, self.maxlen)
        for step in range(self.maxlen):
            with store or contextlib.nullcontext():
                probas, rows.states = self.predict(
                    rows.inputs, rows.output_ids, rows.states, temperature, "probas"
                )
            probas = probas / probas.sum(dim=-1, keepdim=True)
            if step == 0:  # each problem's row becomes its n samples' rows
                index = torch.arange(batch_size, device=self.device).repeat_interleave(n)
                probas = probas[index]
                rows.select(index)
                rows.slots = torch.arange(batch_size * n, device=self.device)
            probas = self._filter(probas, rows.output_ids, step, topk, topp, repetition_penalty)
            sample_ids = torch.multinomial(probas, 1, generator=generator)
            del probas  # (rows, vocab): not alive during the next predict
            rows.output_ids = torch.cat([rows.output_ids, sample_ids], 1)
            if stream:
                rows.remember()
            if self.end_id is not None:
                done = rows.output_ids[:, -1] == self.end_id
                done &= (rows.output_ids == self.end_id).sum(1) >= min_ends
                if done.any():
                    rows.retire(done)
            if stream:
                yield rows.current()
            if rows.output_ids.shape[0] == 0:
                break
        return rows.final()

    def _filter(
        self,
        probas: torch.Tensor,
        output_ids: torch.Tensor,
        step: int,
        topk: int | None,
        topp: float | None,
        repetition_penalty: float,
    ) -> torch.Tensor:
        """``(rows, vocab)`` probabilities after the repetition penalty, ``minlen``, top-k
        and top-p; raises when a row has no token left to sample."""
        if repetition_penalty != 1:
            log_probas = apply_repetition_penalty(
                torch.log(probas + 1e-12), self._generated(output_ids), repetition_penalty
            )
            probas = log_probas.exp()
        probas = self._mask_end(probas, step, 0.0)
        if topk is not None:
            probas = top_k_filter(probas, int(topk))
        if topp is not None:
            probas = top_p_filter(probas, float(topp))
        if not torch.isfinite(probas).all() or (probas.sum(-1) <= 0).any():
            raise ValueError(
                f"step {step}: no token left to sample (all probabilities are zero or NaN)"
            )
        return probas

    def random_sample(
        self,
        inputs: Sequence[Any],
        n: int,
        topk: int | None = None,
        topp: float | None = None,
        states: Any = None,
        temperature: float = 1,
        min_ends: int = 1,
        *,
        repetition_penalty: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> list[torch.Tensor]:
        """Draw ``n`` random sequences for one input (lists, tuples and arrays get a batch
        dim of 1; tensors keep their ``(1, ...)`` shape).

        Args:
            n: how many samples.
            topk: sample only among the ``topk`` most probable tokens.
            topp: sample only among the most probable tokens whose mass reaches ``topp``.
            generator: a ``torch.Generator`` for reproducible draws.

        Returns:
            ``n`` id sequences: finished ones in the order they finished, then
            those cut at ``maxlen``.
        """
        return self._search(
            "sample", inputs, False, True, False, n=n, topk=topk, topp=topp, states=states,
            temperature=temperature, min_ends=min_ends,
            repetition_penalty=repetition_penalty, generator=generator,
        )  # fmt: skip

    def stream_random_sample(
        self,
        inputs: Sequence[Any],
        n: int = 1,
        topk: int | None = None,
        topp: float | None = None,
        states: Any = None,
        temperature: float = 1,
        min_ends: int = 1,
        *,
        repetition_penalty: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> Iterator[list[torch.Tensor]]:
        """Like :meth:`random_sample`, yielding the ``n`` samples' current ids after each step."""
        yield from self._search(
            "sample", inputs, False, True, True, n=n, topk=topk, topp=topp, states=states,
            temperature=temperature, min_ends=min_ends,
            repetition_penalty=repetition_penalty, generator=generator,
        )  # fmt: skip

    def batch_random_sample(
        self,
        inputs: Sequence[Any],
        n: int,
        topk: int | None = None,
        topp: float | None = None,
        states: Any = None,
        temperature: float = 1,
        min_ends: int = 1,
        *,
        repetition_penalty: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> list[list[torch.Tensor]]:
        """``n`` samples for each of a batch of independent inputs, decoded together.

        Args:
            inputs: model inputs with a leading batch dim ``(batch, ...)``.

        Returns:
            ``batch`` lists of ``n`` id sequences.
        """
        return self._search(
            "sample", inputs, True, False, False, n=n, topk=topk, topp=topp, states=states,
            temperature=temperature, min_ends=min_ends,
            repetition_penalty=repetition_penalty, generator=generator,
        )  # fmt: skip
