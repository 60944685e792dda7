"""GPLinker relation extraction, bert4torch 0.2.5 style (its
examples/relation_extraction/task_relation_extraction_gplinker.py): three GlobalPointers
over a BERT, a SparseMultilabelCategoricalCrossentropy subclass returning a dict of
losses, compile(metrics=['entity_loss', 'head_loss', 'tail_loss']), rematch-based
extraction. The entity pointer is built with RoPE=False: 0.2.5's RoPE rotates along the
heads axis (a MIGRATION.md row), with RoPE=False both libraries compute the same."""

import json
import os

import numpy as np
import torch
import torch.optim as optim
from torch.utils.data import DataLoader

# seed: from bert4torch.layers import GlobalPointer
# seed: from bert4torch.tokenizers import Tokenizer
# seed: from bert4torch.models import build_transformer_model, BaseModel
# seed: from bert4torch.snippets import sequence_padding, Callback, ListDataset, seed_everything
# seed: from bert4torch.losses import SparseMultilabelCategoricalCrossentropy
# [b4t imports]
from b4t.adversarial import SparseMultilabelCategoricalCrossentropy
from b4t.layers import GlobalPointer
from b4t.models import build_transformer_model
from b4t.tokenizers import Tokenizer, sequence_padding
from b4t.trainer import BaseModel, Callback, ListDataset, seed_everything

# [end b4t imports]

maxlen = 32
batch_size = 16
root = os.environ["B4T_PORT_DIR"]
config_path = f"{root}/bert/config.json"
checkpoint_path = f"{root}/bert/pytorch_model.bin"
dict_path = f"{root}/vocab.txt"
device = "cpu"
seed_everything(42)

predicate2id, id2predicate = {}, {}
with open(f"{root}/spo/all_50_schemas", encoding="utf-8") as f:
    for l in f:
        l = json.loads(l)
        if l["predicate"] not in predicate2id:
            id2predicate[len(predicate2id)] = l["predicate"]
            predicate2id[l["predicate"]] = len(predicate2id)

tokenizer = Tokenizer(dict_path, do_lower_case=True)


class MyDataset(ListDataset):
    @staticmethod
    def load_data(filename):
        D = []
        with open(filename, encoding="utf-8") as f:
            for l in f:
                l = json.loads(l)
                D.append(
                    {
                        "text": l["text"],
                        "spo_list": [
                            (spo["subject"], spo["predicate"], spo["object"])
                            for spo in l["spo_list"]
                        ],
                    }
                )
        return D


def collate_fn(batch):
    def search(pattern, sequence):
        n = len(pattern)
        for i in range(len(sequence)):
            if sequence[i : i + n] == pattern:
                return i
        return -1

    batch_token_ids, batch_segment_ids = [], []
    batch_entity_labels, batch_head_labels, batch_tail_labels = [], [], []
    for d in batch:
        token_ids, segment_ids = tokenizer.encode(d["text"], maxlen=maxlen)
        spoes = set()
        for s, p, o in d["spo_list"]:
            s = tokenizer.encode(s)[0][1:-1]
            p = predicate2id[p]
            o = tokenizer.encode(o)[0][1:-1]
            sh = search(s, token_ids)
            oh = search(o, token_ids)
            if sh != -1 and oh != -1:
                spoes.add((sh, sh + len(s) - 1, p, oh, oh + len(o) - 1))
        entity_labels = [set() for _ in range(2)]
        head_labels = [set() for _ in range(len(predicate2id))]
        tail_labels = [set() for _ in range(len(predicate2id))]
        for sh, st, p, oh, ot in spoes:
            entity_labels[0].add((sh, st))
            entity_labels[1].add((oh, ot))
            head_labels[p].add((sh, oh))
            tail_labels[p].add((st, ot))
        for label in entity_labels + head_labels + tail_labels:
            if not label:
                label.add((0, 0))
        entity_labels = sequence_padding([list(l) for l in entity_labels])
        head_labels = sequence_padding([list(l) for l in head_labels])
        tail_labels = sequence_padding([list(l) for l in tail_labels])
        batch_token_ids.append(token_ids)
        batch_segment_ids.append(segment_ids)
        batch_entity_labels.append(entity_labels)
        batch_head_labels.append(head_labels)
        batch_tail_labels.append(tail_labels)

    batch_token_ids = torch.tensor(
        sequence_padding(batch_token_ids), dtype=torch.long, device=device
    )
    batch_segment_ids = torch.tensor(
        sequence_padding(batch_segment_ids), dtype=torch.long, device=device
    )
    batch_entity_labels = torch.tensor(
        sequence_padding(batch_entity_labels, seq_dims=2), dtype=torch.float, device=device
    )
    batch_head_labels = torch.tensor(
        sequence_padding(batch_head_labels, seq_dims=2), dtype=torch.float, device=device
    )
    batch_tail_labels = torch.tensor(
        sequence_padding(batch_tail_labels, seq_dims=2), dtype=torch.float, device=device
    )
    return [batch_token_ids, batch_segment_ids], [
        batch_entity_labels,
        batch_head_labels,
        batch_tail_labels,
    ]


train_dataloader = DataLoader(
    MyDataset(f"{root}/spo/train.json"), batch_size=batch_size, shuffle=True, collate_fn=collate_fn
)
valid_dataset = MyDataset(f"{root}/spo/dev.json")


class Model(BaseModel):
    def __init__(self) -> None:
        super().__init__()
        self.bert = build_transformer_model(config_path, checkpoint_path)
        seed_everything(7)  # the same head init on both libraries (MIGRATION.md: random stream)
        self.entity_output = GlobalPointer(hidden_size=32, heads=2, head_size=16, RoPE=False)
        self.head_output = GlobalPointer(
            hidden_size=32, heads=len(predicate2id), head_size=16, RoPE=False, tril_mask=False
        )
        self.tail_output = GlobalPointer(
            hidden_size=32, heads=len(predicate2id), head_size=16, RoPE=False, tril_mask=False
        )

    def forward(self, inputs):
        hidden_states = self.bert(inputs)
        mask = inputs[0].gt(0).long()
        entity_output = self.entity_output(hidden_states, mask)
        head_output = self.head_output(hidden_states, mask)
        tail_output = self.tail_output(hidden_states, mask)
        return entity_output, head_output, tail_output


model = Model().to(device)


class MyLoss(SparseMultilabelCategoricalCrossentropy):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)

    def forward(self, y_preds, y_trues):
        loss_list = []
        for y_pred, y_true in zip(y_preds, y_trues):
            shape = y_pred.shape
            y_true = y_true[..., 0] * shape[2] + y_true[..., 1]
            y_pred = y_pred.reshape(shape[0], -1, np.prod(shape[2:]))
            loss = super().forward(y_pred, y_true.long())
            loss = torch.mean(torch.sum(loss, dim=1))
            loss_list.append(loss)
        return {
            "loss": sum(loss_list) / 3,
            "entity_loss": loss_list[0],
            "head_loss": loss_list[1],
            "tail_loss": loss_list[2],
        }


model.compile(
    loss=MyLoss(mask_zero=True),
    optimizer=optim.Adam(model.parameters(), 5e-3),
    metrics=["entity_loss", "head_loss", "tail_loss"],
)


def extract_spoes(text, threshold=0):
    tokens = tokenizer.tokenize(text, maxlen=maxlen)
    mapping = tokenizer.rematch(text, tokens)
    token_ids, segment_ids = tokenizer.encode(text, maxlen=maxlen)
    token_ids = torch.tensor([token_ids], dtype=torch.long, device=device)
    segment_ids = torch.tensor([segment_ids], dtype=torch.long, device=device)
    outputs = model.predict([token_ids, segment_ids])
    outputs = [o[0].cpu().numpy() for o in outputs]
    subjects, objects = set(), set()
    outputs[0][:, [0, -1]] -= float("inf")
    outputs[0][:, :, [0, -1]] -= float("inf")
    for l, h, t in zip(*np.where(outputs[0] > threshold)):
        if l == 0:
            subjects.add((h, t))
        else:
            objects.add((h, t))
    spoes = set()
    for sh, st in subjects:
        for oh, ot in objects:
            p1s = np.where(outputs[1][:, sh, oh] > threshold)[0]
            p2s = np.where(outputs[2][:, st, ot] > threshold)[0]
            ps = set(p1s) & set(p2s)
            for p in ps:
                spoes.add(
                    (
                        text[mapping[sh][0] : mapping[st][-1] + 1],
                        id2predicate[p],
                        text[mapping[oh][0] : mapping[ot][-1] + 1],
                    )
                )
    return list(spoes)


def evaluate(data):
    X, Y, Z = 0, 1e-10, 1e-10
    for d in data:
        R = set(extract_spoes(d["text"]))
        T = set(d["spo_list"])
        X += len(R & T)
        Y += len(R)
        Z += len(T)
    return 2 * X / (Y + Z), X / Y, X / Z


class Evaluator(Callback):
    def __init__(self):
        self.best_val_f1 = 0.0
        self.f1s = []

    def on_epoch_end(self, steps, epoch, logs=None):
        f1, precision, recall = evaluate(valid_dataset.data)
        self.f1s.append(f1)
        if f1 >= self.best_val_f1:
            self.best_val_f1 = f1
        print(f"f1: {f1:.5f}, precision: {precision:.5f}, recall: {recall:.5f}\n")


if __name__ == "__main__":
    evaluator = Evaluator()
    seed_everything(42)
    history = model.fit(train_dataloader, steps_per_epoch=None, epochs=8, callbacks=[evaluator])
    h = history.history
    assert {"loss", "entity_loss", "head_loss", "tail_loss"} <= set(h), sorted(h)
    assert h["loss"][-1] < h["loss"][0] * 0.5, h
    assert evaluator.best_val_f1 >= 0.8, evaluator.f1s
    spo = sorted(extract_spoes(valid_dataset.data[0]["text"]))
    out = {k: h[k] for k in ("loss", "entity_loss", "head_loss", "tail_loss")}
    out.update(f1s=evaluator.f1s, spo=[list(t) for t in spo])
    json.dump(out, open(os.environ["B4T_PORT_OUT"], "w"), ensure_ascii=False)
