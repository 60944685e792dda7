"""Text generation for any model that follows the b4t decoder protocol.

:class:`SeqGeneration` drives a decoder-only model, :class:`Seq2SeqGeneration`
an encoder-decoder whose encoder runs once. Both are
:class:`~b4t.generation.AutoRegressiveDecoder` subclasses, so beam search,
sampling, streaming and batching are the same code; with ``use_states=True``
(the default) the model's KV cache is the decoder's ``states`` and each step
feeds one new token, with ``use_states=False`` every step re-reads the whole
sequence (slower, kept for checking and comparison).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import torch

from b4t.generation.decoder import AutoRegressiveDecoder
from b4t.generation.protocol import (
    decoder_step,
    encode_text,
    split_model_output,
    takes_logits_to_keep,
)

__all__ = ["Seq2SeqGeneration", "SeqGeneration"]

_MODES = ("random_sample", "beam_search")


def _limit_cache(cache: Any, total: int) -> None:
    """Tell a cache that can be told (b4t's ``KVCache.limit_length``) that the run holds at
    most ``total`` positions, so its buffers never grow past that."""
    limit = getattr(cache, "limit_length", None)
    if callable(limit):
        limit(total)


class _TextGeneration(AutoRegressiveDecoder):
    """Shared text handling: encoding, padding, decoding, mode dispatch."""

    left_pad = True

    def __init__(
        self,
        model: Any,
        tokenizer: Any = None,
        start_id: int | None = None,
        end_id: int | None = None,
        maxlen: int = 64,
        minlen: int = 1,
        pad_id: int = 0,
        mode: str = "random_sample",
        use_states: bool = True,
        device: str | torch.device = "cpu",
    ) -> None:
        super().__init__(start_id, end_id, maxlen, minlen, device)
        if mode not in _MODES:
            raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")
        self.model = model
        self.tokenizer = tokenizer
        self.pad_id = pad_id
        self.mode = mode
        self.use_states = use_states
        self._keep_last: bool | None = None  # model takes logits_to_keep (found at step 1)

    # ------------------------------------------------------------ text <-> ids

    def _pad(self, sequences: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Pad to ``(batch, longest)`` ids and a 1/0 mask (left or right padding)."""
        longest = max(len(s) for s in sequences)
        if longest == 0 and self.start_id is None:
            raise ValueError("cannot generate from an empty prompt without a start_id")
        ids = torch.full((len(sequences), longest), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(sequences), longest), dtype=torch.long)
        for row, seq in enumerate(sequences):
            if not seq:
                continue
            span = slice(longest - len(seq), longest) if self.left_pad else slice(0, len(seq))
            ids[row, span] = torch.tensor(seq, dtype=torch.long)
            mask[row, span] = 1
        return ids.to(self.device), mask.to(self.device)

    def _strip(self, ids: torch.Tensor) -> list[int]:
        """Generated ids without the start token and anything from the end token on."""
        out = ids[self.first_output_ids.shape[1] :].tolist()
        if self.end_id is not None and self.end_id in out:
            out = out[: out.index(self.end_id)]
        return out

    def _finish(self, ids: torch.Tensor) -> Any:
        out = self._strip(ids)
        if self.tokenizer is not None and hasattr(self.tokenizer, "decode"):
            return self.tokenizer.decode(out)
        return out

    def _encode_batch(self, texts: Sequence[Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """Prompts (strings or id lists) as padded ``(batch, longest)`` ids and mask."""
        return self._pad([encode_text(self.tokenizer, t) for t in texts])

    def _model_inputs(self, texts: Sequence[Any]) -> list[torch.Tensor]:
        raise NotImplementedError

    def _step_output(
        self, logits: torch.Tensor, cache: Any, states: Any, length: int
    ) -> tuple[torch.Tensor, Any]:
        """``predict``'s answer: the last position's ``(rows, vocab)`` logits and the cache
        to keep (none without ``use_states``). At the first step a cache that can be told
        is limited to the run: ``length`` positions read now, ``maxlen - 1`` to come."""
        if states is None and self.use_states:
            _limit_cache(cache, length + self.maxlen - 1)
        return logits[:, -1], (cache if self.use_states else None)

    # ------------------------------------------------------------ public calls

    @torch.no_grad()
    def batch_generate(
        self,
        texts: Sequence[Any],
        *,
        n: int = 1,
        topk: int | None = None,
        topp: float | None = None,
        temperature: float = 1.0,
        min_ends: int = 1,
        repetition_penalty: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> list[Any]:
        """Generate for several prompts decoded together.

        Args:
            texts: strings (needs a tokenizer) or lists of token ids.
            n: samples per prompt (``random_sample`` mode).
            topk: beam width in ``beam_search`` mode (default 1: greedy);
                top-k filter in ``random_sample`` mode.
            topp: nucleus filter (``random_sample`` mode).

        Returns:
            Per prompt: one output in ``beam_search`` mode, a list of ``n`` in
            ``random_sample`` mode. An output is the decoded text when the
            tokenizer has ``decode``, else the list of generated ids.
        """
        if isinstance(texts, str):
            raise TypeError("batch_generate takes a list of prompts; use generate for one")
        inputs = self._model_inputs(texts)
        if self.mode == "beam_search":
            best = self.batch_beam_search(
                inputs, topk or 1, None, temperature, min_ends,
                repetition_penalty=repetition_penalty,
            )  # fmt: skip
            return [self._finish(ids) for ids in best]
        samples = self.batch_random_sample(
            inputs, n, topk, topp, None, temperature, min_ends,
            repetition_penalty=repetition_penalty, generator=generator,
        )  # fmt: skip
        return [[self._finish(ids) for ids in row] for row in samples]

    def generate(self, text: Any, **kwargs: Any) -> Any:
        """Generate for one prompt (a string or a list of ids); see :meth:`batch_generate`."""
        return self.batch_generate([text], **kwargs)[0]

    def stream_generate(
        self,
        text: Any,
        *,
        topk: int | None = None,
        topp: float | None = None,
        temperature: float = 1.0,
        repetition_penalty: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> Iterator[Any]:
        """Yield the growing output for one prompt after every step.

        In ``beam_search`` mode it is the current best beam; in
        ``random_sample`` mode a single sample. The last item equals the
        finished output.
        """
        inputs = self._model_inputs([text])
        with torch.no_grad():
            if self.mode == "beam_search":
                steps: Iterator[Any] = self.stream_beam_search(
                    inputs, topk or 1, None, temperature, add_btz_dim=False,
                    repetition_penalty=repetition_penalty,
                )  # fmt: skip
            else:  # one sample: the first of n=1
                samples = self.stream_random_sample(
                    inputs, 1, topk, topp, None, temperature, 1,
                    repetition_penalty=repetition_penalty, generator=generator,
                )  # fmt: skip
                steps = (current[0] for current in samples)
            for ids in steps:
                yield self._finish(ids)


class SeqGeneration(_TextGeneration):
    """Generation with a decoder-only model (GPT, LLaMA style).

    Prompts are left-padded into one batch; ``start_id`` (if any) is put after
    the prompt. See :mod:`b4t.generation.protocol` for what ``model`` must do.

    Args:
        model: a :class:`~b4t.generation.protocol.DecoderModel`.
        tokenizer: anything with ``encode``/``decode`` (optional with id prompts).
        start_id: as in :class:`AutoRegressiveDecoder`.
        end_id: as in :class:`AutoRegressiveDecoder`.
        maxlen: as in :class:`AutoRegressiveDecoder`.
        minlen: as in :class:`AutoRegressiveDecoder`.
        pad_id: the id used for left padding (masked out).
        mode: ``'random_sample'`` or ``'beam_search'``.
        use_states: feed one token per step with the KV cache (``True``) or
            the whole sequence every step (``False``).
    """

    left_pad = True

    def _model_inputs(self, texts: Sequence[Any]) -> list[torch.Tensor]:
        return list(self._encode_batch(texts))

    @AutoRegressiveDecoder.wraps(default_rtype="logits", use_states=True)
    def predict(
        self, inputs: list[torch.Tensor], output_ids: torch.Tensor, states: Any
    ) -> tuple[torch.Tensor, Any]:
        """Next-token logits ``(rows, vocab)`` and the cache: the prompt and the ids so far
        at the first step (or every step without ``use_states``), then the last id."""
        prompt, prompt_mask = inputs
        generated_mask = torch.ones_like(output_ids)
        mask = torch.cat([prompt_mask, generated_mask], 1)
        if self._keep_last is None:
            self._keep_last = takes_logits_to_keep(self.model)
        keep = 1 if self._keep_last else 0
        if self.use_states and states is not None:
            logits, cache = decoder_step(self.model, output_ids[:, -1:], states, mask, keep)
        else:
            ids = torch.cat([prompt, output_ids], 1)
            logits, cache = decoder_step(self.model, ids, None, mask, keep)
        return self._step_output(logits, cache, states, mask.shape[1])


class Seq2SeqGeneration(_TextGeneration):
    """Generation with an encoder-decoder model (T5, BART style).

    The encoder runs once per call on the right-padded batch of sources; its
    output rows follow the beams/samples. ``start_id`` (the decoder start
    token) is required.

    Args:
        model: a :class:`~b4t.generation.protocol.Seq2SeqModel`.

    The other arguments are as in :class:`SeqGeneration`.
    """

    left_pad = False

    def __init__(
        self, model: Any, tokenizer: Any = None, start_id: int | None = None, **kwargs: Any
    ) -> None:
        if start_id is None:
            raise ValueError("Seq2SeqGeneration needs start_id, the decoder's first token")
        for name in ("encode", "decode"):
            if not callable(getattr(model, name, None)):
                raise TypeError(f"a seq2seq model needs a {name}() method: {type(model).__name__}")
        super().__init__(model, tokenizer, start_id, **kwargs)

    def _model_inputs(self, texts: Sequence[Any]) -> list[torch.Tensor]:
        ids, mask = self._encode_batch(texts)
        with torch.no_grad():
            memory = self.model.encode(ids, mask)
        return [memory, mask]

    @AutoRegressiveDecoder.wraps(default_rtype="logits", use_states=True)
    def predict(
        self, inputs: list[torch.Tensor], output_ids: torch.Tensor, states: Any
    ) -> tuple[torch.Tensor, Any]:
        """Next-token logits ``(rows, vocab)`` and the decoder cache over the encoder
        ``memory``: the ids so far at the first step, then the last id."""
        memory, memory_mask = inputs
        if self.use_states and states is not None:
            output = self.model.decode(output_ids[:, -1:], memory, memory_mask, states)
        else:
            output = self.model.decode(output_ids, memory, memory_mask, None)
        logits, cache = split_model_output(output)
        return self._step_output(logits, cache, states, output_ids.shape[1])
