"""Title generation with T5-PEGASUS, bert4torch 0.2.5 style (its
examples/seq2seq/task_seq2seq_autotitle_csl_t5_pegasus.py): a BERT vocab, a converted
config (hidden_size, attention_head_size, ...), build_transformer_model(model=...,
segment_vocab_size=0, add_trainer=True), the encoder's output tensor given to
beam_search and the decoder's predict in AutoRegressiveDecoder.predict. The checkpoint is
a T5.1.0 (tied head, which 0.2.5 and b4t score alike; T5-PEGASUS itself is mt5.1.1, whose
logits 0.2.5 scales by d_model ** -0.5: a MIGRATION.md row); jieba pre-tokenization is
left out. Run on b4t only: 0.2.5 loads the one word table into three parameters
(encoder, decoder, head) and trains them apart, b4t trains the tied table, so the
losses part after the first optimizer step (a MIGRATION.md row)."""

import json
import os

import torch
import torch.nn as nn
import torch.optim as optim
from torch.utils.data import DataLoader

# seed: from bert4torch.models import build_transformer_model
# seed: from bert4torch.tokenizers import Tokenizer
# seed: from bert4torch.snippets import sequence_padding, seed_everything
# seed: from bert4torch.snippets import AutoRegressiveDecoder, Callback, ListDataset
# [b4t imports]
from b4t.generation import AutoRegressiveDecoder
from b4t.models import build_transformer_model
from b4t.tokenizers import Tokenizer, sequence_padding
from b4t.trainer import Callback, ListDataset, seed_everything

# [end b4t imports]

max_c_len = 24
max_t_len = 6
batch_size = 8
root = os.environ["B4T_PORT_DIR"]
config_path = f"{root}/t5/config.json"
checkpoint_path = f"{root}/t5/pytorch_model.bin"
dict_path = f"{root}/vocab.txt"
device = "cpu"
seed_everything(42)


class MyDataset(ListDataset):
    @staticmethod
    def load_data(filename):
        D = []
        with open(filename, encoding="utf-8") as f:
            for l in f:
                title, content = l.strip().split("\t")
                D.append((title, content))
        return D


tokenizer = Tokenizer(dict_path, do_lower_case=True)


def collate_fn(batch):
    batch_content_ids, batch_titile_ids = [], []
    for title, content in batch:
        token_ids, _ = tokenizer.encode(content, maxlen=max_c_len)
        batch_content_ids.append(token_ids)
        token_ids, _ = tokenizer.encode(title, maxlen=max_t_len)
        batch_titile_ids.append(token_ids)
    batch_content_ids = torch.tensor(
        sequence_padding(batch_content_ids), dtype=torch.long, device=device
    )
    batch_titile_ids = torch.tensor(
        sequence_padding(batch_titile_ids), dtype=torch.long, device=device
    )
    return [[batch_content_ids], [batch_titile_ids[:, :-1]]], batch_titile_ids[:, 1:].flatten()


train_dataset = MyDataset(f"{root}/titles/train.tsv")
train_dataloader = DataLoader(
    train_dataset, batch_size=batch_size, shuffle=True, collate_fn=collate_fn
)

model = build_transformer_model(
    config_path,
    checkpoint_path,
    model="t5.1.0",
    segment_vocab_size=0,
    add_trainer=True,
).to(device)


class CrossEntropyLoss(nn.CrossEntropyLoss):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)

    def forward(self, outputs, y_true):
        _, _, y_pred = outputs
        y_pred = y_pred.reshape(-1, y_pred.shape[-1])
        return super().forward(y_pred, y_true)


model.compile(loss=CrossEntropyLoss(ignore_index=0), optimizer=optim.Adam(model.parameters(), 5e-3))


class AutoTitle(AutoRegressiveDecoder):
    @AutoRegressiveDecoder.wraps(default_rtype="logits")
    def predict(self, inputs, output_ids, states):
        return model.decoder.predict([output_ids] + inputs)[-1][:, -1, :]

    def generate(self, text, topk=1):
        token_ids, _ = tokenizer.encode(text, maxlen=max_c_len)
        token_ids = torch.tensor([token_ids], device=device)
        encoder_output = model.encoder.predict([token_ids])
        output_ids = self.beam_search(encoder_output, topk=topk)
        return tokenizer.decode([int(i) for i in output_ids.cpu().numpy()])


autotitle = AutoTitle(
    start_id=tokenizer._token_start_id,
    end_id=tokenizer._token_end_id,
    maxlen=max_t_len,
    device=device,
)


class Evaluator(Callback):
    def __init__(self):
        self.exact = []

    def on_epoch_end(self, steps, epoch, logs=None):
        data = train_dataset.data[:16]
        hits = sum(autotitle.generate(content, topk=2) == title for title, content in data)
        self.exact.append(hits / len(data))


if __name__ == "__main__":
    evaluator = Evaluator()
    seed_everything(42)
    history = model.fit(train_dataloader, steps_per_epoch=None, epochs=8, callbacks=[evaluator])
    titles = [autotitle.generate(content, topk=3) for _, content in train_dataset.data[:8]]
    assert history.history["loss"][-1] < history.history["loss"][0] * 0.5, history.history
    assert max(evaluator.exact) >= 0.75, evaluator.exact
    out = {"loss": history.history["loss"], "exact": evaluator.exact, "titles": titles}
    json.dump(out, open(os.environ["B4T_PORT_OUT"], "w"), ensure_ascii=False)
