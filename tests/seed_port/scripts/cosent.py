"""Sentence similarity with the CoSENT loss on mean-pooled BERT embeddings, bert4torch
0.2.5 style (a two-input forward, get_pool_emb, a custom loss module)."""

import json
import os

import torch
import torch.nn as nn
import torch.optim as optim
from torch.utils.data import DataLoader

# seed: from bert4torch.models import build_transformer_model, BaseModel
# seed: from bert4torch.snippets import sequence_padding, Callback, ListDataset, get_pool_emb, seed_everything
# seed: from bert4torch.tokenizers import Tokenizer
# [b4t imports]
from b4t.layers import get_pool_emb
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

tokenizer = Tokenizer(dict_path, do_lower_case=True)


class MyDataset(ListDataset):
    @staticmethod
    def load_data(filename):
        D = []
        with open(filename, encoding="utf-8") as f:
            for l in f:
                l = l.strip().split("\t")
                D.append((l[0], l[1], float(l[2])))
        return D


def collate_fn(batch):
    batch_token1_ids, batch_token2_ids, batch_labels = [], [], []
    for text1, text2, label in batch:
        token1_ids, _ = tokenizer.encode(text1, maxlen=maxlen)
        batch_token1_ids.append(token1_ids)
        token2_ids, _ = tokenizer.encode(text2, maxlen=maxlen)
        batch_token2_ids.append(token2_ids)
        batch_labels.append([label])
    batch_token1_ids = torch.tensor(
        sequence_padding(batch_token1_ids), dtype=torch.long, device=device
    )
    batch_token2_ids = torch.tensor(
        sequence_padding(batch_token2_ids), dtype=torch.long, device=device
    )
    batch_labels = torch.tensor(batch_labels, dtype=torch.float, device=device)
    return (batch_token1_ids, batch_token2_ids), batch_labels.flatten()


train_dataloader = DataLoader(
    MyDataset(f"{root}/pairs/train.tsv"), batch_size=batch_size, shuffle=True, collate_fn=collate_fn
)
valid_dataloader = DataLoader(
    MyDataset(f"{root}/pairs/dev.tsv"), batch_size=batch_size, collate_fn=collate_fn
)


class Model(BaseModel):
    def __init__(self, pool_method="mean"):
        super().__init__()
        self.pool_method = pool_method
        self.bert = build_transformer_model(config_path, checkpoint_path, segment_vocab_size=0)

    def forward(self, token1_ids, token2_ids):
        hidden_state1 = self.bert([token1_ids])
        embeddings_a = get_pool_emb(hidden_state1, None, token1_ids.gt(0).long(), self.pool_method)
        hidden_state2 = self.bert([token2_ids])
        embeddings_b = get_pool_emb(hidden_state2, None, token2_ids.gt(0).long(), self.pool_method)
        return torch.cosine_similarity(embeddings_a, embeddings_b)


class CoSENTLoss(nn.Module):
    def forward(self, y_pred, y_true):
        y_pred = y_pred * 20
        y_pred = y_pred[:, None] - y_pred[None, :]
        y_true = y_true[:, None] < y_true[None, :]
        y_pred = y_pred - (1 - y_true.float()) * 1e12
        y_pred = torch.cat((torch.zeros(1, device=y_pred.device), y_pred.view(-1)), dim=0)
        return torch.logsumexp(y_pred, dim=0)


model = Model().to(device)
model.compile(loss=CoSENTLoss(), optimizer=optim.Adam(model.parameters(), lr=5e-3))


def evaluate(data):
    sims, labels = [], []
    for (token1_ids, token2_ids), label in data:
        sims.append(model.predict([token1_ids, token2_ids]))
        labels.append(label)
    sims, labels = torch.cat(sims), torch.cat(labels)
    pos, neg = sims[labels > 0.5], sims[labels < 0.5]
    ranked = (pos[:, None] > neg[None, :]).float().mean().item()  # AUC: pairs ranked right
    return ranked, sims


class Evaluator(Callback):
    def __init__(self):
        self.aucs = []

    def on_epoch_end(self, global_step, epoch, logs=None):
        self.aucs.append(evaluate(valid_dataloader)[0])


if __name__ == "__main__":
    evaluator = Evaluator()
    seed_everything(42)
    start_auc, _ = evaluate(valid_dataloader)
    history = model.fit(train_dataloader, epochs=6, steps_per_epoch=None, callbacks=[evaluator])
    auc, sims = evaluate(valid_dataloader)
    assert history.history["loss"][-1] < history.history["loss"][0], history.history
    assert auc >= 0.9 and auc > start_auc, (start_auc, evaluator.aucs)
    out = {"loss": history.history["loss"], "aucs": evaluator.aucs, "sims": sims.tolist()}
    json.dump(out, open(os.environ["B4T_PORT_OUT"], "w"))
