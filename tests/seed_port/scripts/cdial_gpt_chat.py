"""CDial-GPT chat, bert4torch 0.2.5 style (its examples/basic/basic_language_model_CDial_GPT.py):
a converted checkpoint whose config.json sets shared_segment_embeddings (the segment ids
are the speaker tokens' ids, embedded with the word table), model='gpt', speaker tokens
from the vocab, an AutoRegressiveDecoder answering with random_sample (topk draws differ
from 0.2.5's, a MIGRATION.md row: the compared figures are the next-token probabilities,
beam-search replies and a topk-free sample)."""

import json
import os

import torch

# seed: from bert4torch.models import build_transformer_model
# seed: from bert4torch.tokenizers import Tokenizer
# seed: from bert4torch.snippets import AutoRegressiveDecoder, seed_everything
# [b4t imports]
from b4t.generation import AutoRegressiveDecoder
from b4t.models import build_transformer_model
from b4t.tokenizers import Tokenizer
from b4t.trainer import seed_everything

# [end b4t imports]

root = os.environ["B4T_PORT_DIR"]
config_path = f"{root}/cdial/config.json"
checkpoint_path = f"{root}/cdial/pytorch_model.bin"
dict_path = f"{root}/cdial/vocab.txt"
device = "cpu"

tokenizer = Tokenizer(dict_path, do_lower_case=True)
speakers = [tokenizer.token_to_id("[speaker1]"), tokenizer.token_to_id("[speaker2]")]

model = build_transformer_model(
    config_path=config_path,
    checkpoint_path=checkpoint_path,
    model="gpt",
).to(device)


class ChatBot(AutoRegressiveDecoder):
    @AutoRegressiveDecoder.wraps(default_rtype="probas")
    def predict(self, inputs, output_ids, states):
        token_ids, segment_ids = inputs
        curr_segment_ids = torch.zeros_like(output_ids) + token_ids[0, -1]
        token_ids = torch.cat([token_ids, output_ids], 1)
        segment_ids = torch.cat([segment_ids, curr_segment_ids], 1)
        logits = model.predict([token_ids, segment_ids])
        return logits[:, -1, :]

    def context(self, texts):
        token_ids = [tokenizer._token_start_id, speakers[0]]
        segment_ids = [tokenizer._token_start_id, speakers[0]]
        for i, text in enumerate(texts):
            ids = tokenizer.encode(text)[0][1:-1] + [speakers[(i + 1) % 2]]
            token_ids.extend(ids)
            segment_ids.extend([speakers[i % 2]] * len(ids))
            segment_ids[-1] = speakers[(i + 1) % 2]
        return token_ids, segment_ids

    def response(self, texts, n=1, topk=5):
        results = self.random_sample(list(self.context(texts)), n, topk)
        return tokenizer.decode(results[0].cpu().numpy())

    def best_response(self, texts, topk=3):
        output_ids = self.beam_search(list(self.context(texts)), topk=topk)
        return tokenizer.decode(output_ids.cpu().numpy())


chatbot = ChatBot(start_id=None, end_id=tokenizer._token_end_id, maxlen=8, device=device)
dialogues = [["我爱你", "你这样会失去我的", "上海"], ["北京的山", "好"], ["今天天气不错"]]

if __name__ == "__main__":
    seed_everything(42)
    reply = chatbot.response(dialogues[0])
    assert isinstance(reply, str) and reply, reply
    token_ids, segment_ids = chatbot.context(dialogues[0])
    probas = model.predict([torch.tensor([token_ids]), torch.tensor([segment_ids])])[0, -1]
    assert abs(float(probas.sum()) - 1) < 1e-4, float(probas.sum())
    seed_everything(3)
    samples = [chatbot.response(d, n=1, topk=None) for d in dialogues]
    out = {
        "probas": probas.topk(5).values.tolist(),
        "top_ids": probas.topk(5).indices.tolist(),
        "beams": [chatbot.best_response(d) for d in dialogues],
        "samples": samples,
    }
    json.dump(out, open(os.environ["B4T_PORT_OUT"], "w"), ensure_ascii=False)
