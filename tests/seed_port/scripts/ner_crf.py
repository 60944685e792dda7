"""NER with BERT + CRF, bert4torch 0.2.5 style: a one-argument forward, the CRF as the
loss, a metric function returning a dict, an Evaluator computing entity F1 via
crf.decode."""

import json
import os

import numpy as np
import torch
import torch.nn as nn
import torch.optim as optim
from torch.utils.data import DataLoader

# seed: from bert4torch.models import build_transformer_model, BaseModel
# seed: from bert4torch.snippets import sequence_padding, Callback, ListDataset, seed_everything
# seed: from bert4torch.tokenizers import Tokenizer
# seed: from bert4torch.layers import CRF
# [b4t imports]
from b4t.layers import CRF
from b4t.models import build_transformer_model
from b4t.tokenizers import Tokenizer, sequence_padding
from b4t.trainer import BaseModel, Callback, ListDataset, seed_everything

# [end b4t imports]

maxlen = 32
batch_size = 8
categories = ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]
categories_id2label = {i: k for i, k in enumerate(categories)}
categories_label2id = {k: i for i, k in enumerate(categories)}
root = os.environ["B4T_PORT_DIR"]
config_path = f"{root}/bert/config.json"
checkpoint_path = f"{root}/bert/pytorch_model.bin"
dict_path = f"{root}/vocab.txt"
device = "cpu"
seed_everything(42)


class MyDataset(ListDataset):
    @staticmethod
    def load_data(filename):
        D = []
        with open(filename, encoding="utf-8") as f:
            f = f.read()
            for l in f.split("\n\n"):
                if not l.strip():
                    continue
                d = [""]
                for i, c in enumerate(l.split("\n")):
                    char, flag = c.split(" ")
                    d[0] += char
                    if flag[0] == "B":
                        d.append([i, i, flag[2:]])
                    elif flag[0] == "I":
                        d[-1][1] = i
                D.append(d)
        return D


tokenizer = Tokenizer(dict_path, do_lower_case=True)


def collate_fn(batch):
    batch_token_ids, batch_labels = [], []
    for d in batch:
        tokens = tokenizer.tokenize(d[0], maxlen=maxlen)
        mapping = tokenizer.rematch(d[0], tokens)
        start_mapping = {j[0]: i for i, j in enumerate(mapping) if j}
        end_mapping = {j[-1]: i for i, j in enumerate(mapping) if j}
        token_ids = tokenizer.tokens_to_ids(tokens)
        labels = np.zeros(len(token_ids))
        for start, end, label in d[1:]:
            if start in start_mapping and end in end_mapping:
                start = start_mapping[start]
                end = end_mapping[end]
                labels[start] = categories_label2id["B-" + label]
                labels[start + 1 : end + 1] = categories_label2id["I-" + label]
        batch_token_ids.append(token_ids)
        batch_labels.append(labels)
    batch_token_ids = torch.tensor(
        sequence_padding(batch_token_ids), dtype=torch.long, device=device
    )
    batch_labels = torch.tensor(sequence_padding(batch_labels), dtype=torch.long, device=device)
    return batch_token_ids, batch_labels


train_dataloader = DataLoader(
    MyDataset(f"{root}/ner/train.txt"), batch_size=batch_size, shuffle=True, collate_fn=collate_fn
)
valid_dataloader = DataLoader(
    MyDataset(f"{root}/ner/dev.txt"), batch_size=batch_size, collate_fn=collate_fn
)


class Model(BaseModel):
    def __init__(self):
        super().__init__()
        self.bert = build_transformer_model(
            config_path=config_path, checkpoint_path=checkpoint_path, segment_vocab_size=0
        )
        seed_everything(7)  # the same head init on both libraries (see MIGRATION.md: random stream)
        self.fc = nn.Linear(32, len(categories))
        self.crf = CRF(len(categories))

    def forward(self, token_ids):
        sequence_output = self.bert([token_ids])
        emission_score = self.fc(sequence_output)
        attention_mask = token_ids.gt(0).long()
        return emission_score, attention_mask

    def predict(self, token_ids):
        self.eval()
        with torch.no_grad():
            emission_score, attention_mask = self.forward(token_ids)
            best_path = self.crf.decode(emission_score, attention_mask)
        return best_path


model = Model().to(device)


class Loss(nn.Module):
    def forward(self, outputs, labels):
        return model.crf(*outputs, labels)


def acc(y_pred, y_true):
    y_pred = y_pred[0]
    y_pred = torch.argmax(y_pred, dim=-1)
    acc = torch.sum(y_pred.eq(y_true)).item() / y_true.numel()
    return {"acc": acc}


model.compile(loss=Loss(), optimizer=optim.Adam(model.parameters(), lr=2e-3), metrics=acc)


def trans_entity2tuple(scores):
    batch_entity_ids = set()
    for i, one_samp in enumerate(scores):
        entity_ids = []
        for j, item in enumerate(one_samp):
            flag_tag = categories_id2label[item.item()]
            if flag_tag.startswith("B-"):
                entity_ids.append([i, j, j, flag_tag[2:]])
            elif len(entity_ids) == 0:
                continue
            elif (
                (len(entity_ids[-1]) > 0)
                and flag_tag.startswith("I-")
                and (flag_tag[2:] == entity_ids[-1][-1])
            ):
                entity_ids[-1][-2] = j
            elif len(entity_ids[-1]) > 0:
                entity_ids.append([])
        for i in entity_ids:
            if i:
                batch_entity_ids.add(tuple(i))
    return batch_entity_ids


def evaluate(data):
    X, Y, Z = 1e-10, 1e-10, 1e-10
    for token_ids, label in data:
        scores = model.predict(token_ids)
        attention_mask = label.gt(0)
        entity_pred = trans_entity2tuple(scores)
        entity_true = trans_entity2tuple(label)
        X += len(entity_pred.intersection(entity_true))
        Y += len(entity_pred)
        Z += len(entity_true)
    return 2 * X / (Y + Z)


class Evaluator(Callback):
    def __init__(self):
        self.f1s = []

    def on_epoch_end(self, steps, epoch, logs=None):
        f1 = evaluate(valid_dataloader)
        self.f1s.append(f1)
        print(f"[val] f1: {f1:.5f}")


if __name__ == "__main__":
    evaluator = Evaluator()
    seed_everything(42)
    history = model.fit(train_dataloader, epochs=8, steps_per_epoch=None, callbacks=[evaluator])
    assert history.history["loss"][-1] < history.history["loss"][0] * 0.5, history.history
    assert max(evaluator.f1s) >= 0.8, evaluator.f1s
    assert "acc" in history.history, history.history  # the dict metric reaches the epoch logs
    x, _ = next(iter(valid_dataloader))
    paths = model.predict(x)
    out = {"loss": history.history["loss"], "f1s": evaluator.f1s, "paths": paths.tolist()}
    json.dump(out, open(os.environ["B4T_PORT_OUT"], "w"))
