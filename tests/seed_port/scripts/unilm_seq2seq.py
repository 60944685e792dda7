"""UniLM seq2seq (title generation), bert4torch 0.2.5 style: the built model is itself the
trainer (model.compile / model.fit on build_transformer_model's result), the MLM head
gives the next-token scores, an AutoRegressiveDecoder subclass decodes with beam search."""

import json
import os

import torch
import torch.nn as nn
import torch.optim as optim
from torch.utils.data import DataLoader

# seed: from bert4torch.models import build_transformer_model
# seed: from bert4torch.snippets import sequence_padding, Callback, ListDataset, seed_everything, AutoRegressiveDecoder
# seed: from bert4torch.tokenizers import Tokenizer
# [b4t imports]
from b4t.generation import AutoRegressiveDecoder
from b4t.models import build_transformer_model
from b4t.tokenizers import Tokenizer, sequence_padding
from b4t.trainer import Callback, ListDataset, seed_everything

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


class MyDataset(ListDataset):
    @staticmethod
    def load_data(filename):
        D = []
        with open(filename, encoding="utf-8") as f:
            for l in f:
                title, content = l.strip().split("\t")
                D.append((title, content))
        return D


def collate_fn(batch):
    batch_token_ids, batch_segment_ids = [], []
    for title, content in batch:
        token_ids, segment_ids = tokenizer.encode(content, title, maxlen=maxlen)
        batch_token_ids.append(token_ids)
        batch_segment_ids.append(segment_ids)
    batch_token_ids = torch.tensor(
        sequence_padding(batch_token_ids), dtype=torch.long, device=device
    )
    batch_segment_ids = torch.tensor(
        sequence_padding(batch_segment_ids), dtype=torch.long, device=device
    )
    return [batch_token_ids, batch_segment_ids], [batch_token_ids, batch_segment_ids]


train_dataloader = DataLoader(
    MyDataset(f"{root}/titles/train.tsv"),
    batch_size=batch_size,
    shuffle=True,
    collate_fn=collate_fn,
)

model = build_transformer_model(
    config_path, checkpoint_path, with_mlm=True, application="unilm"
).to(device)


class CrossEntropyLoss(nn.CrossEntropyLoss):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)

    def forward(self, outputs, target):
        _, y_pred = outputs
        y_true, y_mask = target
        y_true = y_true[:, 1:]  # target token_ids
        y_mask = y_mask[:, 1:]  # segment_ids mark exactly the part to predict
        y_pred = y_pred[:, :-1, :]  # predicted sequence, shifted by one
        y_pred = y_pred.reshape(-1, y_pred.shape[-1])
        y_true = (y_true * y_mask).flatten()
        return super().forward(y_pred, y_true)


model.compile(loss=CrossEntropyLoss(ignore_index=0), optimizer=optim.Adam(model.parameters(), 5e-3))


class AutoTitle(AutoRegressiveDecoder):
    @AutoRegressiveDecoder.wraps(default_rtype="logits")
    def predict(self, inputs, output_ids, states):
        token_ids, segment_ids = inputs
        token_ids = torch.cat([token_ids, output_ids], 1)
        segment_ids = torch.cat([segment_ids, torch.ones_like(output_ids, device=device)], 1)
        _, y_pred = model.predict([token_ids, segment_ids])
        return y_pred[:, -1, :]

    def generate(self, text, topk=1):
        max_c_len = maxlen - self.maxlen
        token_ids, segment_ids = tokenizer.encode(text, maxlen=max_c_len)
        output_ids = self.beam_search([token_ids, segment_ids], topk=topk)
        return tokenizer.decode(output_ids.cpu().numpy())


autotitle = AutoTitle(start_id=None, end_id=tokenizer._token_end_id, maxlen=6, device=device)
data = MyDataset(f"{root}/titles/train.tsv").data


class Evaluator(Callback):
    def __init__(self):
        self.exact = []

    def on_epoch_end(self, steps, epoch, logs=None):
        hits = sum(autotitle.generate(content, topk=2) == title for title, content in data[:16])
        self.exact.append(hits / 16)


if __name__ == "__main__":
    evaluator = Evaluator()
    seed_everything(42)
    history = model.fit(train_dataloader, epochs=12, steps_per_epoch=None, callbacks=[evaluator])
    titles = [autotitle.generate(content, topk=3) for _, content in data[:8]]
    assert history.history["loss"][-1] < history.history["loss"][0] * 0.5, history.history
    assert max(evaluator.exact) >= 0.75, evaluator.exact
    out = {"loss": history.history["loss"], "exact": evaluator.exact, "titles": titles}
    json.dump(out, open(os.environ["B4T_PORT_OUT"], "w"))
