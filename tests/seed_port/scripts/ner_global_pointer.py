"""NER with BERT + GlobalPointer and the multilabel categorical cross-entropy, bert4torch
0.2.5 style (entity F1 from the span scores above 0)."""

import json
import os

import numpy as np
import torch
import torch.optim as optim
from torch.utils.data import DataLoader

# seed: from bert4torch.models import build_transformer_model, BaseModel
# seed: from bert4torch.snippets import sequence_padding, Callback, ListDataset, seed_everything
# seed: from bert4torch.tokenizers import Tokenizer
# seed: from bert4torch.losses import MultilabelCategoricalCrossentropy
# seed: from bert4torch.layers import GlobalPointer
# [b4t imports]
from b4t.adversarial import MultilabelCategoricalCrossentropy
from b4t.layers import GlobalPointer
from b4t.models import build_transformer_model
from b4t.tokenizers import Tokenizer, sequence_padding
from b4t.trainer import BaseModel, Callback, ListDataset, seed_everything

# [end b4t imports]

maxlen = 32
batch_size = 8
categories = ["LOC", "PER"]
root = os.environ["B4T_PORT_DIR"]
config_path = f"{root}/bert/config.json"
checkpoint_path = f"{root}/bert/pytorch_model.bin"
dict_path = f"{root}/vocab.txt"
device = "cpu"
seed_everything(42)


class MyDataset(ListDataset):
    @staticmethod
    def load_data(filename):
        data = []
        with open(filename, encoding="utf-8") as f:
            f = f.read()
            for l in f.split("\n\n"):
                if not l:
                    continue
                text, label = "", []
                for i, c in enumerate(l.split("\n")):
                    char, flag = c.split(" ")
                    text += char
                    if flag[0] == "B":
                        label.append([i, i, flag[2:]])
                    elif flag[0] == "I":
                        label[-1][1] = i
                data.append((text, label))
        return data


tokenizer = Tokenizer(dict_path, do_lower_case=True)


def collate_fn(batch):
    batch_token_ids, batch_labels = [], []
    for i, (text, text_labels) in enumerate(batch):
        tokens = tokenizer.tokenize(text, maxlen=maxlen)
        mapping = tokenizer.rematch(text, tokens)
        start_mapping = {j[0]: i for i, j in enumerate(mapping) if j}
        end_mapping = {j[-1]: i for i, j in enumerate(mapping) if j}
        token_ids = tokenizer.tokens_to_ids(tokens)
        labels = np.zeros((len(categories), maxlen, maxlen))
        for start, end, label in text_labels:
            if start in start_mapping and end in end_mapping:
                start = start_mapping[start]
                end = end_mapping[end]
                label = categories.index(label)
                labels[label, start, end] = 1
        batch_token_ids.append(token_ids)
        batch_labels.append(labels[:, : len(token_ids), : len(token_ids)])
    batch_token_ids = torch.tensor(
        sequence_padding(batch_token_ids), dtype=torch.long, device=device
    )
    batch_labels = torch.tensor(
        sequence_padding(batch_labels, seq_dims=3), dtype=torch.long, device=device
    )
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
        self.global_pointer = GlobalPointer(hidden_size=32, heads=len(categories), head_size=16)

    def forward(self, token_ids):
        sequence_output = self.bert([token_ids])
        logit = self.global_pointer(sequence_output, token_ids.gt(0).long())
        return logit


model = Model().to(device)


class MyLoss(MultilabelCategoricalCrossentropy):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)

    def forward(self, y_pred, y_true):
        y_true = y_true.view(y_true.shape[0] * y_true.shape[1], -1)
        y_pred = y_pred.view(y_pred.shape[0] * y_pred.shape[1], -1)
        return super().forward(y_pred, y_true)


model.compile(loss=MyLoss(), optimizer=optim.Adam(model.parameters(), lr=2e-3))


def evaluate(data, threshold=0):
    X, Y, Z = 0, 1e-10, 1e-10
    for x_true, label in data:
        scores = model.predict(x_true)
        for i, score in enumerate(scores):
            R = set()
            for l, start, end in zip(*np.where(score.cpu() > threshold)):
                R.add((start, end, categories[l]))
            T = set()
            for l, start, end in zip(*np.where(label[i].cpu() > threshold)):
                T.add((start, end, categories[l]))
            X += len(R & T)
            Y += len(R)
            Z += len(T)
    return 2 * X / (Y + Z)


class Evaluator(Callback):
    def __init__(self):
        self.f1s = []

    def on_epoch_end(self, steps, epoch, logs=None):
        self.f1s.append(evaluate(valid_dataloader))


if __name__ == "__main__":
    evaluator = Evaluator()
    seed_everything(42)
    history = model.fit(train_dataloader, epochs=10, steps_per_epoch=None, callbacks=[evaluator])
    assert history.history["loss"][-1] < history.history["loss"][0] * 0.5, history.history
    assert max(evaluator.f1s) >= 0.8, evaluator.f1s
    out = {"loss": history.history["loss"], "f1s": evaluator.f1s}
    json.dump(out, open(os.environ["B4T_PORT_OUT"], "w"))
