"""b4t.generation: autoregressive decoding and the WebServing helper.

- :class:`AutoRegressiveDecoder`: the seed's ``predict``/``wraps``/``beam_search``/
  ``random_sample`` contract, plus batching, streaming, a KV cache as ``states``
  and a repetition penalty.
- :class:`SeqGeneration` / :class:`Seq2SeqGeneration`: generation for any model
  that follows the decoder protocol (:mod:`b4t.generation.protocol`).
- :class:`WebServing`: a function behind a JSON HTTP API on bottle.
- :func:`add_generation_routes` / :class:`GenerationService`: serve a text
  generator on a ``WebServing`` (seed-style ``/generate``, SSE streaming, the
  OpenAI-compatible ``/v1`` API and a streaming page at ``/``).
"""

from b4t.generation._version import __version__
from b4t.generation.decoder import AutoRegressiveDecoder
from b4t.generation.filters import apply_repetition_penalty, top_k_filter, top_p_filter
from b4t.generation.protocol import DecoderModel, Seq2SeqModel, TokenizerLike
from b4t.generation.request import GenerationRequest
from b4t.generation.routes import add_generation_routes
from b4t.generation.seq import Seq2SeqGeneration, SeqGeneration
from b4t.generation.service import GenerationService, stream_from_generation
from b4t.generation.serving import RequestError, WebServing, bounded
from b4t.generation.states import select_states

__all__ = [
    "AutoRegressiveDecoder",
    "DecoderModel",
    "GenerationRequest",
    "GenerationService",
    "RequestError",
    "Seq2SeqGeneration",
    "Seq2SeqModel",
    "SeqGeneration",
    "TokenizerLike",
    "WebServing",
    "__version__",
    "add_generation_routes",
    "apply_repetition_penalty",
    "bounded",
    "select_states",
    "stream_from_generation",
    "top_k_filter",
    "top_p_filter",
]
