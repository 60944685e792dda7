"""GPT2-ML text continuation, bert4torch 0.2.5 style: an AutoRegressiveDecoder subclass
whose predict feeds the whole sequence to model.predict every step (no cache code), with
beam search and random sampling (plain sampling: top-p draws differ on purpose, see
MIGRATION.md)."""

import json
import os

import torch

# seed: from bert4torch.models import build_transformer_model
# seed: from bert4torch.snippets import AutoRegressiveDecoder, seed_everything
# seed: from bert4torch.tokenizers import Tokenizer
# [b4t imports]
from b4t.generation import AutoRegressiveDecoder
from b4t.models import build_transformer_model
from b4t.tokenizers import Tokenizer
from b4t.trainer import seed_everything

# [end b4t imports]

root = os.environ["B4T_PORT_DIR"]
config_path = f"{root}/gpt2_ml/config.json"
checkpoint_path = f"{root}/gpt2_ml/pytorch_model.bin"
dict_path = f"{root}/vocab.txt"
device = "cpu"

tokenizer = Tokenizer(dict_path, do_lower_case=True)
model = build_transformer_model(
    config_path=config_path, checkpoint_path=checkpoint_path, model="gpt2_ml", segment_vocab_size=0
).to(device)


class ArticleCompletion(AutoRegressiveDecoder):
    @AutoRegressiveDecoder.wraps(default_rtype="probas")
    def predict(self, inputs, output_ids, states):
        token_ids = torch.cat([inputs[0], output_ids], 1)
        logits = model.predict([token_ids])
        return logits[:, -1, :]

    def generate(self, text, n=1, topk=None):
        token_ids, _ = tokenizer.encode(text)
        if topk is not None:
            return [tokenizer.decode(self.beam_search([token_ids[:-1]], topk=topk).cpu().numpy())]
        results = self.random_sample([token_ids[:-1]], n)
        return [tokenizer.decode(ids.cpu().numpy()) for ids in results]


article_completion = ArticleCompletion(
    start_id=None, end_id=tokenizer._token_end_id, maxlen=16, minlen=4, device=device
)

if __name__ == "__main__":
    prompts = ["北京的山", "今天的风很大", "我在上海"]
    greedy = [article_completion.generate(p, topk=1)[0] for p in prompts]
    beams = [article_completion.generate(p, topk=3)[0] for p in prompts]
    seed_everything(7)
    samples = [article_completion.generate(p, n=3) for p in prompts]
    assert all(len(t) >= 4 for t in greedy), greedy  # minlen: at least 4 tokens
    assert len({t for row in samples for t in row}) > 3, samples  # the draws differ
    out = {"greedy": greedy, "beams": beams, "samples": samples}
    json.dump(out, open(os.environ["B4T_PORT_OUT"], "w"), ensure_ascii=False)
