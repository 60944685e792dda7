"""Resuming an interrupted run, the recipe of bert4torch 0.2.5's tutorial: a callback saves
the weights, the optimizer and save_steps_params mid-epoch; after a crash a new process
loads all three (load_steps_params) and calls fit again with the same arguments."""

import json
import os

import torch
import torch.nn as nn
import torch.optim as optim
from torch.utils.data import DataLoader

# seed: from bert4torch.models import build_transformer_model, BaseModel
# seed: from bert4torch.snippets import sequence_padding, Callback, ListDataset, seed_everything
# seed: from bert4torch.tokenizers import Tokenizer
# [b4t imports]
from b4t.models import build_transformer_model
from b4t.tokenizers import Tokenizer, sequence_padding
from b4t.trainer import BaseModel, Callback, ListDataset, seed_everything

# [end b4t imports]

maxlen = 32
batch_size = 16
epochs = 3
root = os.environ["B4T_PORT_DIR"]
config_path = f"{root}/bert/config.json"
checkpoint_path = f"{root}/bert/pytorch_model.bin"
dict_path = f"{root}/vocab.txt"
device = "cpu"
tokenizer = Tokenizer(dict_path, do_lower_case=True)


class MyDataset(ListDataset):
    @staticmethod
    def load_data(filename):
        D = []
        with open(filename, encoding="utf-8") as f:
            for l in f:
                text, label = l.strip().split("\t")
                D.append((text, int(label)))
        return D


def collate_fn(batch):
    batch_token_ids, batch_labels = [], []
    for text, label in batch:
        token_ids, _ = tokenizer.encode(text, maxlen=maxlen)
        batch_token_ids.append(token_ids)
        batch_labels.append(label)
    batch_token_ids = torch.tensor(
        sequence_padding(batch_token_ids), dtype=torch.long, device=device
    )
    return batch_token_ids, torch.tensor(batch_labels, dtype=torch.long, device=device)


train_dataloader = DataLoader(
    MyDataset(f"{root}/sentiment/train.tsv"), batch_size=batch_size, collate_fn=collate_fn
)


class Model(BaseModel):
    def __init__(self):
        super().__init__()
        self.bert = build_transformer_model(
            config_path=config_path,
            checkpoint_path=checkpoint_path,
            with_pool=True,
            segment_vocab_size=0,
        )
        seed_everything(7)
        self.dense = nn.Linear(32, 2)

    def forward(self, token_ids):
        _, pooled_output = self.bert([token_ids])
        return self.dense(pooled_output)


class Crash(Exception):
    pass


class Recorder(Callback):
    """Records every step and epoch end; saves at step `save_at`, crashes after it."""

    def __init__(self, model, optimizer, save_at=None, crash=False):
        self.model_, self.optimizer, self.save_at, self.crash = model, optimizer, save_at, crash
        self.steps, self.epoch_ends = [], []

    def on_batch_end(self, global_step, local_step, logs=None):
        self.steps.append(global_step)
        if global_step == self.save_at:
            self.model_.save_weights("model.pt")
            torch.save(self.optimizer.state_dict(), "optimizer.pt")
            self.model_.save_steps_params("steps_params.pt")
            if self.crash:
                raise Crash(global_step)

    def on_epoch_end(self, global_step, epoch, logs=None):
        self.epoch_ends.append((epoch, sorted(k for k in (logs or {}) if k != "size")))


def new_run():
    model = Model().to(device)
    optimizer = optim.Adam(model.parameters(), lr=1e-3)
    model.compile(loss=nn.CrossEntropyLoss(), optimizer=optimizer)
    return model, optimizer


if __name__ == "__main__":
    steps_per_epoch = len(train_dataloader)
    save_at = steps_per_epoch + 2  # in the middle of the second epoch
    model, optimizer = new_run()
    full = Recorder(model, optimizer)
    model.fit(train_dataloader, epochs=epochs, callbacks=[full])

    model, optimizer = new_run()
    first = Recorder(model, optimizer, save_at=save_at, crash=True)
    try:
        model.fit(train_dataloader, epochs=epochs, callbacks=[first])
        raise AssertionError("the run did not crash")
    except Crash:
        pass

    model, optimizer = new_run()  # the restarted process
    model.load_weights("model.pt")
    optimizer.load_state_dict(torch.load("optimizer.pt"))
    model.load_steps_params("steps_params.pt")
    second = Recorder(model, optimizer)
    model.fit(train_dataloader, epochs=epochs, callbacks=[second])

    resumed_steps = first.steps + second.steps
    assert resumed_steps == full.steps, (first.steps, second.steps, full.steps)  # no step twice
    assert first.epoch_ends + second.epoch_ends == full.epoch_ends, (
        first.epoch_ends,
        second.epoch_ends,
    )
    assert all(keys for _, keys in second.epoch_ends), second.epoch_ends  # no empty epoch logs
    out = {"steps": resumed_steps, "epoch_ends": second.epoch_ends}
    json.dump(out, open(os.environ["B4T_PORT_OUT"], "w"))
