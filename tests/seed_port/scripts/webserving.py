"""Serving a classifier with WebServing, bert4torch 0.2.5 style: route a function with
its argument spec, start the server, query it over HTTP (here from a thread of the same
script, on 127.0.0.1)."""

import json
import os
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

import torch
import torch.nn as nn

# seed: from bert4torch.models import build_transformer_model, BaseModel
# seed: from bert4torch.snippets import WebServing, seed_everything
# seed: from bert4torch.tokenizers import Tokenizer
# [b4t imports]
from b4t.generation import WebServing
from b4t.models import build_transformer_model
from b4t.tokenizers import Tokenizer
from b4t.trainer import BaseModel, seed_everything

# [end b4t imports]

maxlen = 32
root = os.environ["B4T_PORT_DIR"]
config_path = f"{root}/bert/config.json"
checkpoint_path = f"{root}/bert/pytorch_model.bin"
dict_path = f"{root}/vocab.txt"
device = "cpu"
tokenizer = Tokenizer(dict_path, do_lower_case=True)


class Model(BaseModel):
    def __init__(self):
        super().__init__()
        self.bert = build_transformer_model(
            config_path=config_path, checkpoint_path=checkpoint_path, with_pool=True
        )
        seed_everything(7)  # the same head init on both libraries (see MIGRATION.md: random stream)
        self.dense = nn.Linear(32, 2)

    def forward(self, token_ids, segment_ids):
        _, pooled_output = self.bert([token_ids, segment_ids])
        return self.dense(pooled_output)


model = Model().to(device)


def classify(text, topn=2):
    token_ids, segment_ids = tokenizer.encode(text, maxlen=maxlen)
    logits = model.predict(
        [torch.tensor([token_ids], device=device), torch.tensor([segment_ids], device=device)]
    )
    probas = torch.softmax(logits[0], dim=-1).tolist()
    return {"label": int(logits[0].argmax()), "probas": [round(p, 5) for p in probas[:topn]]}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(port, query):
    url = f"http://127.0.0.1:{port}/classify?{urllib.parse.urlencode(query)}"
    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            return json.loads(r.read().decode("utf-8"))
    except urllib.error.HTTPError as e:  # b4t answers bad requests with a 4xx (see MIGRATION.md)
        return json.loads(e.read().decode("utf-8"))


if __name__ == "__main__":
    port = free_port()
    arguments = {"text": (None, True), "topn": (int, False)}
    web = WebServing(host="127.0.0.1", port=port, server="wsgiref")
    web.route("/classify", classify, arguments)
    threading.Thread(target=web.start, daemon=True).start()
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.1)
    good = get(port, {"text": "好棒的一天"})
    one = get(port, {"text": "太差了", "topn": "1"})
    missing = get(port, {"topn": "1"})
    expected = classify("好棒的一天")
    assert good["code"] == 0 and good["data"] == expected, (good, expected)
    assert len(one["data"]["probas"]) == 1, one
    assert missing["code"] == 1 and "text" in missing["desc"], missing
    out = {"good": good, "one": one, "missing_code": missing["code"]}
    json.dump(out, open(os.environ["B4T_PORT_OUT"], "w"))
