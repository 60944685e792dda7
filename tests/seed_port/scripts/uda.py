"""UDA semi-supervised sentiment classification, bert4torch 0.2.5 style (its
examples/training_trick/task_sentiment_UDA.py): a UDALoss subclass returning a dict of
losses, compile(metrics=['loss_sup', 'loss_unsup']), the trainer's global_step /
total_steps read inside the loss, text_segmentate in load_data, noise from np.random."""

import json
import os
import random

import numpy as np
import torch
import torch.nn as nn
import torch.optim as optim
from torch.utils.data import DataLoader

# seed: from bert4torch.models import build_transformer_model, BaseModel
# seed: from bert4torch.snippets import sequence_padding, Callback, text_segmentate, ListDataset, seed_everything, get_pool_emb
# seed: from bert4torch.tokenizers import Tokenizer
# seed: from bert4torch.losses import UDALoss
# [b4t imports]
from b4t.adversarial import UDALoss
from b4t.layers import get_pool_emb
from b4t.models import build_transformer_model
from b4t.tokenizers import Tokenizer, sequence_padding, text_segmentate
from b4t.trainer import BaseModel, Callback, ListDataset, seed_everything

# [end b4t imports]

maxlen = 32
batch_size = 12
root = os.environ["B4T_PORT_DIR"]
config_path = f"{root}/bert/config.json"
checkpoint_path = f"{root}/bert/pytorch_model.bin"
dict_path = f"{root}/vocab.txt"
device = "cpu"
seed_everything(42)

tokenizer = Tokenizer(dict_path, do_lower_case=True)


class MyDataset(ListDataset):
    @staticmethod
    def load_data(filenames):
        D = []
        seps, strips = "\n。！？!?；;，, ", "；;，, "
        for filename in filenames:
            with open(filename, encoding="utf-8") as f:
                for l in f:
                    text, label = l.strip().split("\t")
                    for t in text_segmentate(text, maxlen - 2, seps, strips):
                        D.append((t, int(label)))
        return D


train_dataset = MyDataset([f"{root}/sentiment/train.tsv"])
valid_dataset = MyDataset([f"{root}/sentiment/dev.tsv"])
unsup_dataset = [sen for sen, _ in (train_dataset.data + valid_dataset.data)]


def collate_fn(batch):
    def add_noise(token_ids, del_ratio=0.3):
        n = len(token_ids)
        keep_or_not = np.random.rand(n) > del_ratio
        if sum(keep_or_not) == 0:
            keep_or_not[np.random.choice(n)] = True
        return list(np.array(token_ids)[keep_or_not])

    batch_token_ids, batch_labels = [[], [], []], []
    for text, label in batch:
        token_ids, _ = tokenizer.encode(text, maxlen=maxlen)
        batch_token_ids[0].append(token_ids)
        batch_labels.append([label])
        unsup_text = random.choice(unsup_dataset)
        token_ids, _ = tokenizer.encode(unsup_text, maxlen=maxlen)
        batch_token_ids[1].append(token_ids)
        batch_token_ids[2].append(token_ids[:1] + add_noise(token_ids[1:-1]) + token_ids[-1:])

    batch_token_ids = [j for i in batch_token_ids for j in i]
    batch_token_ids = torch.tensor(
        sequence_padding(batch_token_ids), dtype=torch.long, device=device
    )
    batch_labels = torch.tensor(batch_labels, dtype=torch.long, device=device)
    return batch_token_ids, batch_labels.flatten()


train_dataloader = DataLoader(
    train_dataset, batch_size=batch_size, shuffle=True, collate_fn=collate_fn
)
valid_dataloader = DataLoader(valid_dataset, batch_size=batch_size, collate_fn=collate_fn)


class Model(BaseModel):
    def __init__(self, pool_method="cls"):
        super().__init__()
        self.pool_method = pool_method
        self.bert = build_transformer_model(
            config_path=config_path,
            checkpoint_path=checkpoint_path,
            with_pool=True,
            segment_vocab_size=0,
        )
        seed_everything(7)  # the same head init on both libraries (MIGRATION.md: random stream)
        self.dropout = nn.Dropout(0.1)
        self.dense = nn.Linear(self.bert.configs["hidden_size"], 2)

    def forward(self, token_ids):
        hidden_states, pooling = self.bert([token_ids])
        pooled_output = get_pool_emb(
            hidden_states, pooling, token_ids.gt(0).long(), self.pool_method
        )
        output = self.dropout(pooled_output)
        output = self.dense(output)
        return output


model = Model().to(device)


class Loss(UDALoss):
    def forward(self, y_pred, y_true_sup):
        loss, loss_sup, loss_unsup = super().forward(
            y_pred, y_true_sup, model.global_step, model.total_steps
        )
        return {"loss": loss, "loss_sup": loss_sup, "loss_unsup": loss_unsup}


model.compile(
    loss=Loss(tsa_schedule="linear_schedule", start_p=0.8),
    optimizer=optim.Adam(model.parameters(), lr=2e-3),
    metrics=["loss_sup", "loss_unsup"],
)


class Evaluator(Callback):
    def __init__(self):
        self.best_val_acc = 0.0
        self.val_accs = []

    def on_epoch_end(self, global_step, epoch, logs=None):
        val_acc = self.evaluate(valid_dataloader)
        self.val_accs.append(val_acc)
        if val_acc > self.best_val_acc:
            self.best_val_acc = val_acc
        print(f"val_acc: {val_acc:.5f}, best_val_acc: {self.best_val_acc:.5f}\n")

    def evaluate(self, data):
        total, right = 0.0, 0.0
        for token_ids, y_true in data:
            y_pred = model.predict(token_ids[: y_true.size(0)]).argmax(axis=1)
            total += len(y_true)
            right += (y_true == y_pred).sum().item()
        return right / total


if __name__ == "__main__":
    evaluator = Evaluator()
    seed_everything(42)
    history = model.fit(train_dataloader, epochs=5, steps_per_epoch=None, callbacks=[evaluator])
    h = history.history
    assert {"loss", "loss_sup", "loss_unsup"} <= set(h), sorted(h)
    assert h["loss_sup"][-1] < h["loss_sup"][0] * 0.7, h
    assert evaluator.best_val_acc >= 0.8, evaluator.val_accs
    out = {
        "loss": h["loss"],
        "loss_sup": h["loss_sup"],
        "loss_unsup": h["loss_unsup"],
        "val_accs": evaluator.val_accs,
    }
    json.dump(out, open(os.environ["B4T_PORT_OUT"], "w"))
