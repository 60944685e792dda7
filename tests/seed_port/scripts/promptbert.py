"""Unsupervised PromptBERT sentence embeddings, bert4torch 0.2.5 style (its
examples/sentence_embedding/task_sentence_embedding_unsup_PromptBert.py, model_type BERT):
a '[X]' placeholder added as a special token and to the vocab as a compound token
(compound_tokens=[[len(token_dict)]], an id past the checkpoint's vocab), prompt minus
template [MASK] embeddings, an in-batch contrastive loss, dropout_rate and
segment_vocab_size=0 as build arguments, ListDataset(data=...). As in the original, the
tokenizer is made from the vocab file before '[X]' joins token_dict, so '[X]' encodes as
[UNK] and the compound row is built but never looked up. The evaluation correlates
cosine similarities with the labels by np.corrcoef (the original uses scipy's spearmanr)."""

import json
import os

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.optim as optim
from torch.utils.data import DataLoader

# seed: from bert4torch.tokenizers import Tokenizer, load_vocab
# seed: from bert4torch.models import build_transformer_model, BaseModel
# seed: from bert4torch.snippets import ListDataset, sequence_padding, Callback, seed_everything
# [b4t imports]
from b4t.models import build_transformer_model
from b4t.tokenizers import Tokenizer, load_vocab, sequence_padding
from b4t.trainer import BaseModel, Callback, ListDataset, seed_everything

# [end b4t imports]

model_type, dropout_rate = "BERT", 0.1
model_name = "bert"
batch_size = 16
template_len = 15
maxlen = 16 + template_len
root = os.environ["B4T_PORT_DIR"]
config_path = f"{root}/bert/config.json"
checkpoint_path = f"{root}/bert/pytorch_model.bin"
dict_path = f"{root}/vocab.txt"
device = "cpu"
seed_everything(42)

tokenizer = Tokenizer(dict_path, do_lower_case=True, add_special_tokens="[X]")

replace_token = "[X]"
mask_token = "[MASK]"
prompt_templates = [
    f'"{replace_token}" 的意思为[MASK]',
    f'"{replace_token}"这句话的意思是[MASK]',
]

token_dict = load_vocab(dict_path)
compound_tokens = [[len(token_dict)]]
token_dict["[X]"] = len(token_dict)


def load_data(filenames):
    D = []
    for filename in filenames:
        with open(filename, encoding="utf-8") as f:
            for line in f.readlines():
                cache = line.split("\t")
                text1 = cache[0][: maxlen - template_len]
                text2 = cache[1][: maxlen - template_len]
                label = cache[-1]
                for text in [text1, text2]:
                    sentence_pair = []
                    for template in prompt_templates:
                        sent_num = len(tokenizer.tokenize(text))
                        prompt_sent = template.replace(replace_token, text)
                        template_sent = template.replace(replace_token, replace_token * sent_num)
                        sentence_pair.extend([prompt_sent, template_sent])
                    D.append((sentence_pair, int(label)))
    return D


train_texts = load_data([f"{root}/pairs/train.tsv", f"{root}/pairs/dev.tsv"])
valid_texts = list(zip(train_texts[::2], train_texts[1::2]))
np.random.shuffle(train_texts)


def collate_fn(batch):
    batch_tensor = [[] for _ in range(4)]
    for prompt_data, _ in batch:
        for i, item in enumerate(prompt_data):
            batch_tensor[i].append(tokenizer.encode(item, maxlen=maxlen)[0])
    for i, item in enumerate(batch_tensor):
        batch_tensor[i] = torch.tensor(
            sequence_padding(item, maxlen), dtype=torch.long, device=device
        )
    labels = torch.arange(batch_tensor[0].size(0), device=device)
    return batch_tensor, labels


train_dataloader = DataLoader(
    ListDataset(data=train_texts), batch_size=batch_size, shuffle=True, collate_fn=collate_fn
)


def collate_fn_test(batch):
    text1_ids, text2_ids, labels = [], [], []
    for text1, text2 in batch:
        label = text1[-1]
        text1, text2 = text1[0][0], text2[0][0]
        text1_ids.append(tokenizer.encode(text1, maxlen=maxlen)[0])
        text2_ids.append(tokenizer.encode(text2, maxlen=maxlen)[0])
        labels.append(label)
    text1_ids = torch.tensor(sequence_padding(text1_ids), dtype=torch.long, device=device)
    text2_ids = torch.tensor(sequence_padding(text2_ids), dtype=torch.long, device=device)
    labels = torch.tensor(labels, dtype=torch.long, device=device)
    return [text1_ids, text2_ids], labels


valid_dataloader = DataLoader(
    ListDataset(data=valid_texts), batch_size=batch_size, collate_fn=collate_fn_test
)


class PromptBert(BaseModel):
    def __init__(self, scale=20.0):
        super().__init__()
        self.bert = build_transformer_model(
            config_path=config_path,
            checkpoint_path=checkpoint_path,
            model=model_name,
            dropout_rate=dropout_rate,
            segment_vocab_size=0,
            compound_tokens=compound_tokens,
        )
        self.scale = scale

    def forward(self, prompt0_input, template0_input, prompt1_input, template1_input):
        embeddings_a = self.get_sentence_embedding(prompt0_input, template0_input)
        embeddings_b = self.get_sentence_embedding(prompt1_input, template1_input)
        scores = self.cos_sim(embeddings_a, embeddings_b) * self.scale
        return scores

    def get_sentence_embedding(self, prompt_input_ids, template_input_ids):
        prompt_mask_embedding = self.get_mask_embedding(prompt_input_ids)
        template_mask_embedding = self.get_mask_embedding(template_input_ids)
        return prompt_mask_embedding - template_mask_embedding

    def get_mask_embedding(self, input_ids):
        last_hidden_state = self.bert([input_ids])
        mask_index = (input_ids == tokenizer._token_mask_id).long()
        input_mask_expanded = mask_index.unsqueeze(-1).expand(last_hidden_state.size()).float()
        return torch.sum(last_hidden_state * input_mask_expanded, 1)

    def predict(self, input_ids):
        self.eval()
        with torch.no_grad():
            mask_embedding = self.get_mask_embedding(input_ids)
        return mask_embedding

    @staticmethod
    def cos_sim(a, b):
        a_norm = torch.nn.functional.normalize(a, p=2, dim=1)
        b_norm = torch.nn.functional.normalize(b, p=2, dim=1)
        return torch.mm(a_norm, b_norm.transpose(0, 1))


model = PromptBert().to(device)
model.compile(loss=nn.CrossEntropyLoss(), optimizer=optim.Adam(model.parameters(), lr=2e-3))


class Evaluator(Callback):
    def __init__(self):
        self.best_val_sim = -1.0
        self.val_sims = []

    def on_epoch_end(self, global_step, epoch, logs=None):
        val_sim = self.evaluate(valid_dataloader)
        self.val_sims.append(val_sim)
        if val_sim > self.best_val_sim:
            self.best_val_sim = val_sim
        print(f"val_sim: {val_sim:.5f}, best_val_sim: {self.best_val_sim:.5f}\n")

    @staticmethod
    def evaluate(data):
        embeddings1, embeddings2, labels = [], [], []
        for (text1_ids, text2_ids), label in data:
            embeddings1.append(model.predict(text1_ids))
            embeddings2.append(model.predict(text2_ids))
            labels.append(label)
        embeddings1 = torch.cat(embeddings1)
        embeddings2 = torch.cat(embeddings2)
        labels = torch.cat(labels)
        sims = F.cosine_similarity(embeddings1, embeddings2).cpu().numpy()
        return float(np.corrcoef(sims, labels.cpu().numpy())[0, 1])


if __name__ == "__main__":
    evaluator = Evaluator()
    seed_everything(42)
    history = model.fit(train_dataloader, epochs=2, steps_per_epoch=None, callbacks=[evaluator])
    assert history.history["loss"][-1] < history.history["loss"][0], history.history
    assert len(tokenizer.tokenize("[X][X]")) == 4, tokenizer.tokenize("[X][X]")
    # the trained mask embeddings of 16 dev sentences: the model's own output, whose
    # rounding-level drift val_sims (a correlation of cosines all close to 1) amplifies
    (dev_ids, _), _ = collate_fn_test(valid_texts[:16])
    embeddings = model.predict(dev_ids)
    out = {
        "loss": history.history["loss"],
        "val_sims": evaluator.val_sims,
        "embeddings": embeddings.tolist(),
    }
    json.dump(out, open(os.environ["B4T_PORT_OUT"], "w"))
