"""``CausalLM.pack_for_decoding``: oneDNN-packed layers (and a packed copy of a tied LM
head) decode like the plain model, keep the state dict, and unpack back exactly."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from b4t.layers import PackedLinear, packing_available, unpack_linears
from b4t.models import build_transformer_model

transformers = pytest.importorskip("transformers")
generation = pytest.importorskip("b4t.generation")
pytestmark = pytest.mark.skipif(not packing_available(), reason="torch without oneDNN")

PROMPTS = [[5, 6, 7, 8, 9], [20, 21, 22, 23, 24], [33, 2, 40, 41, 9]]
LLAMA = dict(
    vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
    num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
    bos_token_id=0, eos_token_id=1, pad_token_id=0,
)  # fmt: skip


def _llama(tmp_path: Path, tied: bool) -> tuple[Any, Any]:
    torch.manual_seed(0)
    config = transformers.LlamaConfig(**LLAMA, tie_word_embeddings=tied)
    hf = transformers.LlamaForCausalLM(config).eval()
    with torch.no_grad():  # spread the logits so greedy choices are not near-ties
        hf.get_output_embeddings().weight.mul_(4.0)
    hf.save_pretrained(tmp_path / "llama")
    ours = build_transformer_model(checkpoint_path=tmp_path / "llama", model="llama")
    return hf, ours.eval()


@pytest.mark.parametrize("tied", [True, False])
def test_packed_model_decodes_like_transformers_and_unpacks(tmp_path: Path, tied: bool) -> None:
    hf, ours = _llama(tmp_path, tied)
    ids = torch.tensor(PROMPTS)
    with torch.no_grad():
        plain_logits, _ = ours.decode_step(ids)
        state = {k: v.clone() for k, v in ours.state_dict().items()}
        names = ours.pack_for_decoding(rows=3)
        assert ("packed_head" in names) is tied and ("lm_head" in names) is not tied
        assert sum(isinstance(m, PackedLinear) for m in ours.modules()) == len(names)
        packed_logits, _ = ours.decode_step(ids)
        torch.testing.assert_close(packed_logits, plain_logits, rtol=1e-5, atol=1e-5)
        after = ours.state_dict()
        assert list(after) == list(state)
        assert all(torch.equal(after[k], state[k]) for k in state)

        gen = generation.SeqGeneration(ours, end_id=None, maxlen=10, mode="beam_search")
        reference = hf.generate(
            ids, attention_mask=torch.ones_like(ids), max_new_tokens=10, do_sample=False,
            pad_token_id=0, eos_token_id=None,
        )[:, ids.shape[1]:].tolist()  # fmt: skip
        assert gen.batch_generate(PROMPTS, topk=1) == reference

        unpack_linears(ours)
        assert ours.packed_head is None
        assert not any(isinstance(m, PackedLinear) for m in ours.modules())
        assert torch.equal(ours.decode_step(ids)[0], plain_logits)


def test_a_packed_model_refuses_training(tmp_path: Path) -> None:
    _, ours = _llama(tmp_path, tied=True)
    ours.pack_for_decoding()
    ours.train()
    with pytest.raises(RuntimeError, match="inference only"):
        ours.decode_step(torch.tensor(PROMPTS))[0].sum().backward()
