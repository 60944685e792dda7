"""XLNet (``model='xlnet'``): loads transformers' ``XLNetLMHeadModel`` / ``XLNetModel``.

The fine-tuning graph of bert4torch 0.2.5's ``XLNET``: the content stream only (no
``perm_mask`` / ``target_mapping``), relative sinusoid positions over ``K .. -Q+1``
(``attn_type='bi'``, the default) or ``K .. 0`` (``'uni'``, causal), XLNet's segment
term (``[token_ids, segment_ids]``; without segment ids the term is left out, as
transformers does without ``token_type_ids``), per-layer biases (as transformers, whatever
``untie_r`` says), and
post-norm blocks. Padding (``token_pad_ids``, default the config's ``pad_token_id``;
XLNet's is 5) is masked for every query except its own position, as transformers does
with an ``attention_mask``.

Returns the hidden states ``[B, L, H]``, or with ``with_lm=True`` the list ``[hidden,
logits]``; ``logits`` equal transformers' ``XLNetLMHeadModel(...).logits`` (raw scores;
the head ``lm_loss`` is tied to ``word_embedding`` unless the config unties it).
Memory works as in :mod:`b4t.models.variants.transformer_xl` (``mem_len``, ``mems=``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from b4t.models.config import ModelConfig
from b4t.models.registry import Variant, register_variant
from b4t.models.transformer import Transformer
from b4t.models.variants.transformer_xl import TransformerXL
from b4t.models.weight_map import Concat, WeightSource

__all__ = ["HeadProjection", "XLNet", "xlnet_weight_map"]


@dataclass(frozen=True)
class HeadProjection(Concat):
    """XLNet's per-head projection ``[H, N, d]`` as an ``nn.Linear`` weight.

    ``output=False`` (``q``, ``k``, ``v``, ``r``: ``x @ W.reshape(H, N*d)``): loaded as
    ``W.reshape(H, -1).T``; ``output=True`` (``o``: ``sum_nd a[n, d] W[h, n, d]``):
    ``W.reshape(H, -1)``. Saved back as ``[H, N, d]``.
    """

    heads: int = 1
    output: bool = False

    def load(self, tensors: list[torch.Tensor]) -> torch.Tensor:
        w = tensors[0].reshape(tensors[0].shape[0], -1)
        return w.contiguous() if self.output else w.t().contiguous()

    def save(self, tensor: torch.Tensor) -> list[torch.Tensor]:
        w = tensor if self.output else tensor.t()
        return [w.reshape(w.shape[0], self.heads, -1).contiguous()]

    def format(self, **kw: object) -> HeadProjection:
        keys = tuple(k.format(**kw) for k in self.keys)
        return HeadProjection(keys, self.dim, self.heads, self.output)

    def rename(self, fn: Any) -> HeadProjection:
        return HeadProjection(tuple(fn(k) for k in self.keys), self.dim, self.heads, self.output)


def _from_raw(config: ModelConfig, raw_key: str, field: str, convert: Any = None) -> None:
    """Copy XLNet's own config.json key into a ModelConfig field unless the field's key
    was in the file."""
    value = config.raw.get(raw_key)
    if value is not None and field not in config.raw:
        setattr(config, field, convert(value) if convert else value)


class XLNet(TransformerXL):
    """XLNet content stream (see the module docstring)."""

    rel_shift = "xlnet"
    default_tied = True
    model_types = ("xlnet",)
    vocab_params = ("embeddings.weight", "lm_head.weight", "lm_head.bias")

    def __init__(self, config: ModelConfig, **kwargs: Any) -> None:
        config.extra.setdefault("attn_type", "bi")
        super().__init__(config, **kwargs)

    def normalise_config(self, config: ModelConfig, name: str) -> None:
        super().normalise_config(config, name)
        _from_raw(config, "d_inner", "intermediate_size", int)
        _from_raw(config, "ff_activation", "hidden_act")
        _from_raw(config, "dropout", "hidden_dropout_prob", float)
        _from_raw(config, "dropout", "attention_probs_dropout_prob", float)

    def check_attn_type(self, name: str) -> None:
        if self.attn_type not in ("bi", "uni"):
            raise ValueError(
                f"model={name!r}: attn_type must be 'bi' or 'uni', got {self.attn_type!r}"
            )

    def position_sequence(self, qlen: int, klen: int, device: torch.device) -> torch.Tensor:
        """``K .. -Q+1`` (``'bi'``) or ``K .. 0`` (``'uni'``), clamped to ``±clamp_len``."""
        end = -qlen if self.attn_type == "bi" else -1
        pos = torch.arange(klen, end, -1, device=device)
        if self.clamp_len > 0:
            pos = pos.clamp(-self.clamp_len, self.clamp_len)
        return pos

    def keep_mask(self, state: dict[str, Any], qlen: int, mlen: int) -> torch.Tensor | None:
        """``[B, 1, Q, K]`` bool: memory and real tokens are visible, padding only to
        itself; ``'uni'`` adds the causal limit. None when nothing is masked."""
        token_ids = state["token_ids"]
        given = state.get("attention_mask")
        real = token_ids.ne(self.token_pad_ids) if given is None else given.bool()
        causal = None
        if self.attn_type == "uni":
            causal = super().keep_mask(state, qlen, mlen)
        if causal is None and bool(real.all()):
            return None
        batch, device = token_ids.shape[0], token_ids.device
        keys = torch.cat([real.new_ones(batch, mlen), real], dim=1)  # [B, K]
        i = torch.arange(qlen, device=device)[:, None]
        j = torch.arange(qlen + mlen, device=device)[None, :]
        keep = keys[:, None, None, :] | (j == i + mlen)[None, None]
        return keep if causal is None else keep & causal


def xlnet_weight_map(config: ModelConfig, model: Transformer) -> dict[str, WeightSource]:
    """transformers' XLNet names under ``transformer.`` (and the head ``lm_loss``)."""
    n = config.num_attention_heads
    att = "transformer.layer.{i}.rel_attn"
    mapping: dict[str, WeightSource] = {
        "embeddings.weight": "transformer.word_embedding.weight",
        "layers.{i}.norm1.weight": f"{att}.layer_norm.weight",
        "layers.{i}.norm1.bias": f"{att}.layer_norm.bias",
        "layers.{i}.ffn.intermediate.weight": "transformer.layer.{i}.ff.layer_1.weight",
        "layers.{i}.ffn.intermediate.bias": "transformer.layer.{i}.ff.layer_1.bias",
        "layers.{i}.ffn.output.weight": "transformer.layer.{i}.ff.layer_2.weight",
        "layers.{i}.ffn.output.bias": "transformer.layer.{i}.ff.layer_2.bias",
        "layers.{i}.norm2.weight": "transformer.layer.{i}.ff.layer_norm.weight",
        "layers.{i}.norm2.bias": "transformer.layer.{i}.ff.layer_norm.bias",
        "lm_head.weight": "lm_loss.weight",
        "lm_head.bias": "lm_loss.bias",
    }
    for name in ("q", "k", "v", "r", "o"):
        mapping[f"layers.{{i}}.attention.{name}.weight"] = HeadProjection(
            (f"{att}.{name}",), heads=n, output=name == "o"
        )
    for name in ("r_w_bias", "r_r_bias", "r_s_bias", "seg_embed"):
        mapping[f"layers.{{i}}.attention.{name}"] = f"{att}.{name}"
    return mapping


register_variant(
    Variant(
        name="xlnet",
        prefix="transformer",
        weight_map=xlnet_weight_map,
        preset={"type_vocab_size": 2, "layer_norm_eps": 1e-12, "pad_token_id": 5},
        model_cls=XLNet,
        # the two-stream query embedding is used only in pre-training (target_mapping)
        optional_keys=(r"(^|\.)mask_emb$", r"^lm_loss\.weight$"),
        description="XLNet content stream (relative positions, segment term; HF XLNetLMHeadModel)",
    )
)
