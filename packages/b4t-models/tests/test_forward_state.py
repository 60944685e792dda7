"""The typed state the forward stages hand each other: declared names only."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from b4t.models import build_transformer_model
from b4t.models.forward_state import DecoderState, ForwardState
from b4t.models.variants.xlnet import XLNetState

# a one-layer BERT config (the smallest that runs every stage)
BERT = {"vocab_size": 99, "hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2}


def test_unknown_names_are_errors_naming_them() -> None:
    state = ForwardState(token_ids=torch.ones(1, 3, dtype=torch.long))
    with pytest.raises(KeyError, match="no field 'hiden_states'"):
        state["hiden_states"] = torch.zeros(1)
    with pytest.raises(KeyError, match="no field 'maks'"):
        state.get("maks")
    with pytest.raises(AttributeError, match="maks"):
        state.maks = None  # type: ignore[attr-defined]
    with pytest.raises(TypeError, match="perm_mask"):
        ForwardState(perm_mask=None)  # type: ignore[call-arg]
    assert XLNetState(perm_mask=None).perm_mask is None  # XLNet declares it
    assert DecoderState().protocol is False


def test_item_access_and_copy() -> None:
    ids = torch.ones(1, 3, dtype=torch.long)
    state = ForwardState(token_ids=ids, extra_ids=[ids])
    state["mask"] = torch.zeros(1)
    assert state.mask is state["mask"] and state.get("cond", 5) == 5
    copy = state.copy()
    copy.token_ids = None
    copy.extra_ids.append(ids)
    assert state.token_ids is ids and len(state.extra_ids) == 1
    assert state.given(("token_ids", "cond", "mask")) == ["token_ids", "mask"]


def test_the_model_stages_use_its_state_type(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(BERT))
    model = build_transformer_model(config_path=path).eval()
    ids = torch.tensor([[2, 5, 7, 0]])
    state = model.parse_inputs(([ids, torch.zeros_like(ids)],), {})
    assert type(state) is ForwardState and state.segment_ids is not None
    with torch.no_grad():
        out = model.apply_final_layers(model.apply_main_layers(model.apply_embeddings(state)))
        torch.testing.assert_close(out, model([ids, torch.zeros_like(ids)]))
    with pytest.raises(TypeError, match="attenton_mask"):
        model([ids], attenton_mask=torch.ones_like(ids))


def test_forward_keywords_must_be_state_fields(tmp_path: Path) -> None:
    from b4t.models.transformer import Transformer

    class Misdeclared(Transformer):
        forward_keywords = ("task_type_ids", "mems")

    path = tmp_path / "config.json"
    path.write_text(json.dumps(BERT))
    model = build_transformer_model(config_path=path, model=Misdeclared)
    with pytest.raises(TypeError, match=r"mems in forward_keywords but its state_type"):
        model([torch.ones(1, 3, dtype=torch.long)], mems=None)
