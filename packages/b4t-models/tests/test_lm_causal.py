"""application='lm' takes SDPA's causal path (no mask tensor) when nothing is padding."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from b4t.models import build_transformer_model

transformers = pytest.importorskip("transformers")


def test_lm_application_uses_is_causal_and_equals_transformers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = transformers.BertConfig(
        vocab_size=50, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=40, max_position_embeddings=32, is_decoder=True,
    )  # fmt: skip
    torch.manual_seed(0)
    hf = transformers.BertLMHeadModel(config).eval()
    hf.save_pretrained(tmp_path)
    ours = build_transformer_model(
        checkpoint_path=tmp_path, model="bert", application="lm", with_mlm=True
    ).eval()
    calls: list[tuple[bool, bool]] = []
    sdpa = F.scaled_dot_product_attention

    def spy(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append((kwargs.get("attn_mask") is None, bool(kwargs.get("is_causal"))))
        return sdpa(*args, **kwargs)

    monkeypatch.setattr(F, "scaled_dot_product_attention", spy)
    ids = torch.randint(1, 50, (2, 9), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        scores = ours([ids])[-1]
        ref = hf(ids).logits
    assert calls and all(c == (True, True) for c in calls)  # no mask tensor, is_causal
    torch.testing.assert_close(scores, ref, atol=1e-5, rtol=0)
    calls.clear()
    ids[1, 6:] = 0  # padding: the explicit causal + padding mask
    with torch.no_grad():
        scores = ours([ids])[-1]
        ref = hf(ids, attention_mask=ids.ne(0).long()).logits
    assert calls and all(c == (False, False) for c in calls)
    keep = ids.ne(0)
    torch.testing.assert_close(scores[keep], ref[keep], atol=1e-5, rtol=0)
