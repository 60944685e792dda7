"""Masked-LM training and filling, bert4torch 0.2.5 style: the model built with
with_mlm=True is trained directly (model.compile / model.fit), the MLM scores fill [MASK]."""

import json
import os
import random

import torch
import torch.nn as nn
import torch.optim as optim
from torch.utils.data import DataLoader

# seed: from bert4torch.models import build_transformer_model
# seed: from bert4torch.snippets import sequence_padding, ListDataset, seed_everything
# seed: from bert4torch.tokenizers import Tokenizer
# [b4t imports]
from b4t.models import build_transformer_model
from b4t.tokenizers import Tokenizer, sequence_padding
from b4t.trainer import ListDataset, seed_everything

# [end b4t imports]

maxlen = 24
batch_size = 8
root = os.environ["B4T_PORT_DIR"]
config_path = f"{root}/bert/config.json"
checkpoint_path = f"{root}/bert/pytorch_model.bin"
dict_path = f"{root}/vocab.txt"
device = "cpu"
seed_everything(42)

tokenizer = Tokenizer(dict_path, do_lower_case=True)
mask_id = tokenizer._token_mask_id


class MyDataset(ListDataset):
    @staticmethod
    def load_data(filename):
        D = []
        with open(filename, encoding="utf-8") as f:
            for l in f:
                title, content = l.strip().split("\t")
                D.append(content + title)
        return D


def collate_fn(batch):
    batch_token_ids, batch_labels = [], []
    for text in batch:
        token_ids, _ = tokenizer.encode(text, maxlen=maxlen)
        labels = [0] * len(token_ids)
        for i in range(1, len(token_ids) - 1):
            if random.random() < 0.2:
                labels[i] = token_ids[i]
                token_ids[i] = mask_id
        batch_token_ids.append(token_ids)
        batch_labels.append(labels)
    batch_token_ids = torch.tensor(
        sequence_padding(batch_token_ids), dtype=torch.long, device=device
    )
    batch_labels = torch.tensor(sequence_padding(batch_labels), dtype=torch.long, device=device)
    return [batch_token_ids], batch_labels


train_dataloader = DataLoader(
    MyDataset(f"{root}/titles/train.tsv"),
    batch_size=batch_size,
    shuffle=True,
    collate_fn=collate_fn,
)

model = build_transformer_model(
    config_path, checkpoint_path, with_mlm=True, segment_vocab_size=0
).to(device)


class MyLoss(nn.CrossEntropyLoss):
    def forward(self, output, y_true):
        _, y_pred = output
        return super().forward(y_pred.reshape(-1, y_pred.shape[-1]), y_true.flatten())


model.compile(loss=MyLoss(ignore_index=0), optimizer=optim.Adam(model.parameters(), 5e-3))


def fill(text, position):
    token_ids, _ = tokenizer.encode(text)
    token_ids[position] = mask_id
    _, probas = model.predict([torch.tensor([token_ids], device=device)])
    return tokenizer.id_to_token(probas[0, position].argmax().item()), probas[0, position].softmax(
        -1
    )


if __name__ == "__main__":
    data = MyDataset(f"{root}/titles/train.tsv").data
    seed_everything(42)
    history = model.fit(train_dataloader, epochs=16, steps_per_epoch=None)
    # the title's last character repeats the content's first: masked, the model restores it
    hits = [fill(text, len(text))[0] == text[0] for text in data[:16]]
    _, probas = fill(data[0], len(data[0]))
    # most masked characters are random filler (unpredictable): the loss falls, not to 0
    assert history.history["loss"][-1] < history.history["loss"][0] * 0.7, history.history
    assert sum(hits) >= 10, hits
    out = {"loss": history.history["loss"], "hits": hits, "probas": probas.tolist()[:40]}
    json.dump(out, open(os.environ["B4T_PORT_OUT"], "w"))
