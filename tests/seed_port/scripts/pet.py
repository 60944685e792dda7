"""PET (pattern-exploiting training) sentiment classification, bert4torch 0.2.5 style (its
examples/sentence_classfication/task_sentiment_classification_PET.py, 'semi-sup'): a
prompt prefix whose first character is masked and predicted by the MLM head, random MLM
masking of the rest (np.random and tokenizer._vocab_size), ListDataset(data=...,
random=...) read back through self.kwargs, build_transformer_model(with_mlm=True,
add_trainer=True). The label words are 是 / 不 (the tiny vocab's)."""

import json
import os

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.optim import Adam
from torch.utils.data import DataLoader

# seed: from bert4torch.tokenizers import Tokenizer
# seed: from bert4torch.models import build_transformer_model
# seed: from bert4torch.snippets import sequence_padding, ListDataset, Callback, seed_everything
# [b4t imports]
from b4t.models import build_transformer_model
from b4t.tokenizers import Tokenizer, sequence_padding
from b4t.trainer import Callback, ListDataset, seed_everything

# [end b4t imports]

num_classes = 2
maxlen = 32
batch_size = 12
root = os.environ["B4T_PORT_DIR"]
config_path = f"{root}/bert/config.json"
checkpoint_path = f"{root}/bert/pytorch_model.bin"
dict_path = f"{root}/vocab.txt"
device = "cpu"
choice = "semi-sup"
seed_everything(42)


def load_data(filename):
    D = []
    with open(filename, encoding="utf-8") as f:
        for l in f:
            text, label = l.strip().split("\t")
            D.append((text, int(label)))
    return D


train_data = load_data(f"{root}/sentiment/train.tsv")
valid_data = load_data(f"{root}/sentiment/dev.tsv")

train_frac = 0.5
num_labeled = int(len(train_data) * train_frac)
unlabeled_data = [(t, 2) for t, l in train_data[num_labeled:]]
train_data = train_data[:num_labeled] + unlabeled_data

tokenizer = Tokenizer(dict_path, do_lower_case=True)

prefix = "是说。"
mask_idx = 1
pos_id = tokenizer.token_to_id("是")
neg_id = tokenizer.token_to_id("不")


def random_masking(token_ids):
    rands = np.random.random(len(token_ids))
    source, target = [], []
    for r, t in zip(rands, token_ids):
        if r < 0.15 * 0.8:
            source.append(tokenizer._token_mask_id)
            target.append(t)
        elif r < 0.15 * 0.9:
            source.append(t)
            target.append(t)
        elif r < 0.15:
            source.append(np.random.choice(tokenizer._vocab_size - 1) + 1)
            target.append(t)
        else:
            source.append(t)
            target.append(0)
    return source, target


class MyDataset(ListDataset):
    def collate_fn(self, batch):
        batch_token_ids, batch_segment_ids, batch_output_ids = [], [], []
        for text, label in batch:
            if label != 2:
                text = prefix + text
            token_ids, segment_ids = tokenizer.encode(text, maxlen=maxlen)
            if self.kwargs["random"]:
                source_ids, target_ids = random_masking(token_ids)
            else:
                source_ids, target_ids = token_ids[:], token_ids[:]
            if label == 0:
                source_ids[mask_idx] = tokenizer._token_mask_id
                target_ids[mask_idx] = neg_id
            elif label == 1:
                source_ids[mask_idx] = tokenizer._token_mask_id
                target_ids[mask_idx] = pos_id
            batch_token_ids.append(source_ids)
            batch_segment_ids.append(segment_ids)
            batch_output_ids.append(target_ids)
        batch_token_ids = torch.tensor(
            sequence_padding(batch_token_ids), dtype=torch.long, device=device
        )
        batch_segment_ids = torch.tensor(
            sequence_padding(batch_segment_ids), dtype=torch.long, device=device
        )
        batch_output_ids = torch.tensor(
            sequence_padding(batch_output_ids), dtype=torch.long, device=device
        )
        return [batch_token_ids, batch_segment_ids], batch_output_ids


train_dataset = MyDataset(data=train_data, random=True)
valid_dataset = MyDataset(data=valid_data, random=False)
train_dataloader = DataLoader(
    train_dataset, batch_size=batch_size, shuffle=True, collate_fn=train_dataset.collate_fn
)
valid_dataloader = DataLoader(
    valid_dataset, batch_size=batch_size, collate_fn=valid_dataset.collate_fn
)

model = build_transformer_model(
    config_path=config_path, checkpoint_path=checkpoint_path, with_mlm=True, add_trainer=True
).to(device)


class MyLoss(nn.CrossEntropyLoss):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)

    def forward(self, y_preds, y_true):
        y_pred = y_preds[1]
        y_pred = y_pred.reshape(-1, y_pred.shape[-1])
        loss = super().forward(y_pred, y_true.flatten())
        return loss


model.compile(loss=MyLoss(ignore_index=0), optimizer=Adam(model.parameters(), lr=2e-3))


class Evaluator(Callback):
    def __init__(self):
        self.best_val_acc = 0.0
        self.val_accs = []

    def on_epoch_end(self, global_step, epoch, logs=None):
        val_acc = self.evaluate(valid_dataloader)
        self.val_accs.append(val_acc)
        if val_acc > self.best_val_acc:
            self.best_val_acc = val_acc
        print(f"[{choice}]  valid_acc: {val_acc:.4f}, best_val_acc: {self.best_val_acc:.4f}\n")

    @staticmethod
    def evaluate(data):
        total, right = 0.0, 0.0
        for x_true, y_true in data:
            y_pred = F.softmax(model.predict(x_true)[1], dim=-1)
            y_pred = y_pred[:, mask_idx, [neg_id, pos_id]].argmax(axis=1)
            y_true = (y_true[:, mask_idx] == pos_id).long()
            total += len(y_true)
            right += (y_true == y_pred).sum().item()
        return right / total


if __name__ == "__main__":
    evaluator = Evaluator()
    seed_everything(42)
    history = model.fit(train_dataloader, epochs=8, steps_per_epoch=None, callbacks=[evaluator])
    x, _ = next(iter(valid_dataloader))
    probs = F.softmax(model.predict(x)[1], dim=-1)[:, mask_idx, [neg_id, pos_id]]
    assert history.history["loss"][-1] < history.history["loss"][0] * 0.7, history.history
    assert evaluator.best_val_acc >= 0.8, evaluator.val_accs
    out = {"loss": history.history["loss"], "val_accs": evaluator.val_accs, "probs": probs.tolist()}
    json.dump(out, open(os.environ["B4T_PORT_OUT"], "w"))
