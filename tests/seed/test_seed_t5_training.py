"""Training a tied T5.1.0 checkpoint: b4t against bert4torch 0.2.5, one optimizer step.

0.2.5's ``T5`` loads ``shared.weight`` into the encoder's and the decoder's word tables
and ``lm_head.weight`` into the decoder's ``final_dense``, three separate parameters
(its ``tie_emb_src_tgt_weight=True`` only picks the checkpoint name to load from). b4t,
as transformers' ``T5ForConditionalGeneration`` with ``tie_word_embeddings``, keeps one
table for all three. The forward pass, the loss and every other gradient are equal; the
shared table's gradient is the sum of 0.2.5's three, so after the first step the two
trainings part (MIGRATION.md; the seed-port script ``t5_title`` shows it per epoch).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch

from b4t.layers import Linear
from b4t.models import build_transformer_model

SEED_VOCAB = (
    "encoder.embeddings.word_embeddings.weight",
    "decoder.embeddings.word_embeddings.weight",
    "decoder.final_dense.weight",
)


def _both(b4t_seed: dict, tmp_path: Path) -> tuple[torch.nn.Module, torch.nn.Module]:
    """0.2.5's and b4t's T5 built from one transformers T5.1.0 checkpoint (tied head,
    dropout 0), in train mode."""
    transformers = pytest.importorskip("transformers")
    hf_cfg = transformers.T5Config(
        vocab_size=57, d_model=32, d_kv=8, d_ff=48, num_layers=2, num_heads=4,
        relative_attention_num_buckets=8, feed_forward_proj="relu", dropout_rate=0.0,
        tie_word_embeddings=True, layer_norm_epsilon=1e-12,
    )  # fmt: skip
    torch.manual_seed(0)
    hf = transformers.T5ForConditionalGeneration(hf_cfg)
    path = tmp_path / "t5.bin"
    torch.save({k: v.clone() for k, v in hf.state_dict().items()}, path)
    config = tmp_path / "config.json"  # written as 0.2.5's T5 conversions write it
    config.write_text(json.dumps({
        "vocab_size": 57, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
        "attention_head_size": 8, "intermediate_size": 48, "relative_attention_num_buckets": 8,
        "hidden_act": "relu", "attention_scale": False, "hidden_dropout_prob": 0.0,
    }))  # fmt: skip
    seed = b4t_seed["models"].build_transformer_model(
        str(config), str(path), model="t5.1.0", segment_vocab_size=0
    )
    ours = build_transformer_model(config, path, model="t5.1.0", segment_vocab_size=0)
    return seed.train(), ours.train()


def _batch() -> tuple[list[list[torch.Tensor]], torch.Tensor]:
    """Right-padded encoder and decoder ids as a title script feeds them, and the labels
    (the decoder ids shifted by one; 0 is ignored)."""
    gen = torch.Generator().manual_seed(5)
    enc = torch.randint(4, 57, (3, 10), generator=gen)
    titles = torch.randint(4, 57, (3, 6), generator=gen)
    enc[:, 0], titles[:, 0] = 2, 2
    enc[0, 7:], enc[1, 5:] = 0, 0
    titles[0, 5], titles[1, 3], titles[1, 4:], titles[2, 4], titles[2, 5:] = 3, 3, 0, 3, 0
    return [[enc], [titles[:, :-1]]], titles[:, 1:].flatten()


def _step(model: torch.nn.Module, forward, batch) -> tuple[torch.Tensor, dict]:
    """One Adam step on the cross-entropy of ``batch``: the loss and the gradients."""
    inputs, labels = batch
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-3)
    logits = forward(inputs)[-1]
    loss = torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), labels, ignore_index=0
    )
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    optimizer.step()
    return loss.detach(), grads


def _untie(model: torch.nn.Module) -> None:
    """Give b4t's T5 three copies of its word table, as 0.2.5 trains them."""
    table = model.encoder.word_embeddings
    model.encoder.word_embeddings = copy.deepcopy(table)
    model.decoder.word_embeddings = copy.deepcopy(table)
    head = Linear(table.embedding_dim, table.num_embeddings, bias=False)
    head.weight.data.copy_(table.weight.data)
    model.decoder.lm_head = head


def test_t5_trains_one_word_table_where_the_seed_trains_three(b4t_seed, tmp_path) -> None:
    seed, ours = _both(b4t_seed, tmp_path)
    tables = [p for n, p in seed.named_parameters() if n in SEED_VOCAB]
    assert len(tables) == 3, "0.2.5 holds three word-table parameters"
    assert all(torch.equal(t, tables[0]) for t in tables), "all three load shared.weight"
    assert ours.encoder.word_embeddings is ours.decoder.word_embeddings
    assert ours.decoder.lm_head is None, "b4t's head reads the one table"
    untied = copy.deepcopy(ours)
    _untie(untied)

    batch = _batch()
    seed_loss, seed_grads = _step(seed, seed.forward, batch)
    our_loss, our_grads = _step(ours, ours.forward, batch)
    torch.testing.assert_close(our_loss, seed_loss, atol=1e-5, rtol=0)
    summed = sum(seed_grads[n] for n in SEED_VOCAB)
    torch.testing.assert_close(
        our_grads["encoder.word_embeddings.weight"], summed, atol=1e-6, rtol=0
    )
    for ours_name, seed_name in [
        ("encoder.relative_bias.relative_attention_bias.weight",
         "encoder.encoderLayer.0.multiHeadAttention.relative_positions_encoding.weight"),
        ("decoder.relative_bias.relative_attention_bias.weight",
         "decoder.decoderLayer.0.multiHeadAttention.relative_positions_encoding.weight"),
        ("decoder.layers.1.cross.o.weight", "decoder.decoderLayer.1.crossAttention.o.weight"),
        ("decoder.final_norm.weight", "decoder.final_layer_norm.weight"),
    ]:  # fmt: skip
        torch.testing.assert_close(our_grads[ours_name], seed_grads[seed_name], atol=1e-6, rtol=0)

    _step(untied, untied.forward, batch)
    with torch.no_grad():
        theirs = seed.forward(batch[0])[-1]
        tied = ours.forward(batch[0])[-1]
        three = untied.forward(batch[0])[-1]
    # the three copies trained apart are 0.2.5's step; the one table is another (at the
    # real decoder tokens: padded ones differ anyway, another MIGRATION.md row)
    real = batch[0][1][0].ne(0)
    torch.testing.assert_close(three[real], theirs[real], atol=1e-5, rtol=0)
    assert (tied[real] - theirs[real]).abs().max() > 1e-3


def test_the_seeds_checkpoint_save_keeps_one_of_its_two_tables(b4t_seed, tmp_path) -> None:
    """0.2.5's own checkpoint-name save (``save_weights(path, prefix='')``) maps both its
    trained word tables to ``shared.weight``: the decoder's is written, the encoder's is
    lost. A T5 file holds one table, as b4t trains one."""
    seed, _ = _both(b4t_seed, tmp_path)
    with torch.no_grad():
        for i, name in enumerate(SEED_VOCAB, start=1):
            seed.get_parameter(name).add_(float(i))
    seed.save_weights(str(tmp_path / "saved.bin"), prefix="")
    saved = torch.load(tmp_path / "saved.bin")
    assert "encoder.embed_tokens.weight" not in saved
    torch.testing.assert_close(saved["shared.weight"], seed.get_parameter(SEED_VOCAB[1]))
    torch.testing.assert_close(saved["lm_head.weight"], seed.get_parameter(SEED_VOCAB[2]))
