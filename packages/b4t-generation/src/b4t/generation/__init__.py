"""b4t.generation: autoregressive decoding and the WebServing helper.

- :class:`AutoRegressiveDecoder`: the seed's ``predict``/``wraps``/``beam_search``/
  ``random_sample`` contract, plus batching, streaming, a KV cache as ``states``
  and a repetition penalty.
- :class:`SeqGeneration` / :class:`Seq2SeqGeneration`: generation for any model
  that follows the decoder protocol (:mod:`b4t.generation.protocol`).
- :class:`WebServing`: a function behind a JSON HTTP API on bottle.
"""

from b4t.generation._version import __version__
from b4t.generation.decoder import AutoRegressiveDecoder
from b4t.generation.filters import apply_repetition_penalty, top_k_filter, top_p_filter
from b4t.generation.protocol import DecoderModel, Seq2SeqModel, TokenizerLike
from b4t.generation.seq import Seq2SeqGeneration, SeqGeneration
from b4t.generation.serving import WebServing
from b4t.generation.states import select_states

__all__ = [
    "AutoRegressiveDecoder",
    "DecoderModel",
    "Seq2SeqGeneration",
    "Seq2SeqModel",
    "SeqGeneration",
    "TokenizerLike",
    "WebServing",
    "__version__",
    "apply_repetition_penalty",
    "select_states",
    "top_k_filter",
    "top_p_filter",
]
