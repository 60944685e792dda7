"""b4t.layers.

PyTorch layers for BERT-family models: attention, positional encodings,
norms, CRF, GlobalPointer, pooling; bert4torch 0.2.5's layer names with its
arguments (``MultiHeadAttentionLayer``, ``BertLayer``, ``BertEmbeddings``, ...).
"""

from b4t.layers._version import __version__
from b4t.layers.activations import (
    ACT2FN,
    gelu,
    gelu_fast,
    gelu_new,
    get_activation,
    linear_act,
    mish,
    quick_gelu,
    relu,
    sigmoid,
    silu,
    softmax,
    swish,
    tanh,
)
from b4t.layers.adaptive_embedding import AdaptiveEmbedding
from b4t.layers.attention import MultiHeadAttention
from b4t.layers.bert_layer import (
    BertEmbeddings,
    BertLayer,
    Identity,
    MultiHeadAttentionLayer,
    RelativePositionsEncodingT5,
    T5Layer,
)
from b4t.layers.block import TransformerBlock
from b4t.layers.conv import ConvLayer
from b4t.layers.crf import CRF
from b4t.layers.deberta_attention import DisentangledSelfAttention
from b4t.layers.embeddings import (
    Embeddings,
    SinusoidalPositionEncoding,
    create_position_ids_from_input_ids,
    get_sinusoid_encoding_table,
)
from b4t.layers.feed_forward import PositionWiseFeedForward
from b4t.layers.gau import GatedAttentionUnit
from b4t.layers.global_pointer import EfficientGlobalPointer, GlobalPointer
from b4t.layers.gqa import GroupedQueryAttention
from b4t.layers.linear import Linear
from b4t.layers.masks import attention_mask, causal_mask, padding_mask, to_additive_mask, unilm_mask
from b4t.layers.norms import LayerNorm, RMSNorm
from b4t.layers.ops import take_along_dim, torch_div
from b4t.layers.packed import PackedLinear, pack_linears, packing_available, unpack_linears
from b4t.layers.pooling import get_pool_emb
from b4t.layers.quantized import QuantizedLinear, quantize_linears
from b4t.layers.quantized_embedding import QuantizedEmbedding
from b4t.layers.relative_positions import (
    NezhaAttention,
    NezhaRelativePositions,
    RelativePositionsEncoding,
    RelativePositionsEncodingDebertaV2,
    T5RelativePositionBias,
    deberta_relative_position,
    t5_relative_position_bucket,
)
from b4t.layers.rotary import RoPEPositionEncoding, RotaryAttention
from b4t.layers.t5 import CrossAttention, DecoderBlock, T5Block
from b4t.layers.tplinker import TplinkerHandshakingKernel
from b4t.layers.whitening import BERT_WHITENING
from b4t.layers.xlnet import (
    RelativeMultiHeadAttention,
    XlnetLayer,
    XlnetPositionsEncoding,
    rel_shift_xl,
    rel_shift_xlnet,
)

__all__ = [
    "ACT2FN",
    "BERT_WHITENING",
    "CRF",
    "AdaptiveEmbedding",
    "BertEmbeddings",
    "BertLayer",
    "ConvLayer",
    "CrossAttention",
    "DecoderBlock",
    "DisentangledSelfAttention",
    "EfficientGlobalPointer",
    "Embeddings",
    "GatedAttentionUnit",
    "GlobalPointer",
    "GroupedQueryAttention",
    "Identity",
    "LayerNorm",
    "Linear",
    "MultiHeadAttention",
    "MultiHeadAttentionLayer",
    "NezhaAttention",
    "NezhaRelativePositions",
    "PackedLinear",
    "PositionWiseFeedForward",
    "QuantizedEmbedding",
    "QuantizedLinear",
    "RMSNorm",
    "RelativeMultiHeadAttention",
    "RelativePositionsEncoding",
    "RelativePositionsEncodingDebertaV2",
    "RelativePositionsEncodingT5",
    "RoPEPositionEncoding",
    "RotaryAttention",
    "SinusoidalPositionEncoding",
    "T5Block",
    "T5Layer",
    "T5RelativePositionBias",
    "TplinkerHandshakingKernel",
    "TransformerBlock",
    "XlnetLayer",
    "XlnetPositionsEncoding",
    "__version__",
    "attention_mask",
    "causal_mask",
    "create_position_ids_from_input_ids",
    "deberta_relative_position",
    "gelu",
    "gelu_fast",
    "gelu_new",
    "get_activation",
    "get_pool_emb",
    "get_sinusoid_encoding_table",
    "linear_act",
    "mish",
    "pack_linears",
    "packing_available",
    "padding_mask",
    "quantize_linears",
    "quick_gelu",
    "rel_shift_xl",
    "rel_shift_xlnet",
    "relu",
    "sigmoid",
    "silu",
    "softmax",
    "swish",
    "t5_relative_position_bucket",
    "take_along_dim",
    "tanh",
    "to_additive_mask",
    "torch_div",
    "unilm_mask",
    "unpack_linears",
]
