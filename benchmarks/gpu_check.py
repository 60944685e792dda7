"""One prepared GPU check (issue #13): parity, an AMP step, generation speed.

    bash benchmarks/gpu_check.sh            # on a CUDA machine, < 10 minutes
    bash benchmarks/gpu_check.sh --dry-run  # tiny configs on the CPU (syntax and wiring)

1. CUDA parity in fp32 and bf16: b4t's ``gpt2`` against transformers' GPT2LMHeadModel
   (logits) and b4t's ``bert`` against BertModel (hidden states), same random weights.
2. One AMP (bf16 autocast) training step of a BERT MLM: finite loss and gradients.
3. Greedy generation tokens/s, GPT-2 small (random weights), 32-token prompt, 64 new
   tokens, batch 1 and 8: b4t ``SeqGeneration`` on b4t's model against
   ``transformers.generate()``, interleaved, outputs compared.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def parity(device: torch.device, dry: bool) -> None:
    import transformers

    from b4t.models import build_transformer_model

    size = dict(n_embd=64, n_layer=2, n_head=4) if dry else dict(n_embd=768, n_layer=12, n_head=12)
    cfg = transformers.GPT2Config(vocab_size=1000 if dry else 50257, n_positions=128, **size)
    torch.manual_seed(0)
    hf = transformers.GPT2LMHeadModel(cfg).eval()
    bert_cfg = transformers.BertConfig(
        vocab_size=1000, hidden_size=size["n_embd"], num_hidden_layers=size["n_layer"],
        num_attention_heads=size["n_head"], intermediate_size=4 * size["n_embd"],
    )  # fmt: skip
    hf_bert = transformers.BertModel(bert_cfg, add_pooling_layer=False).eval()
    with tempfile.TemporaryDirectory() as tmp:
        hf.save_pretrained(tmp + "/gpt2")
        hf_bert.save_pretrained(tmp + "/bert")
        ours = build_transformer_model(
            checkpoint_path=tmp + "/gpt2", model="gpt2", final_activation="linear"
        ).eval()
        ours_bert = build_transformer_model(checkpoint_path=tmp + "/bert", model="bert").eval()
    ids = torch.randint(1, 1000, (4, 64), device=device)  # no id 0: b4t masks it as padding
    for dtype, tol in ((torch.float32, 1e-4), (torch.bfloat16, 5e-2)):
        for a, b in ((ours, hf), (ours_bert, hf_bert)):
            a.to(device=device, dtype=dtype)
            b.to(device=device, dtype=dtype)
        with torch.no_grad():
            diff = (ours([ids]).float() - hf(ids).logits.float()).abs().max().item()
            bdiff = (
                (ours_bert([ids]).float() - hf_bert(ids).last_hidden_state.float()).abs().max()
            ).item()
        ok = "ok" if diff < tol * 10 and bdiff < tol * 10 else "CHECK"
        print(f"parity {dtype!s:<15} gpt2 logits {diff:.2e}  bert hidden {bdiff:.2e}  {ok}")


def amp_step(device: torch.device, dry: bool) -> None:
    from b4t.models import build_transformer_model

    hidden = 64 if dry else 768
    config = {"vocab_size": 1000, "hidden_size": hidden, "num_hidden_layers": 2,
              "num_attention_heads": 4, "intermediate_size": 4 * hidden}  # fmt: skip
    model = build_transformer_model(config, model="bert", with_mlm=True).to(device)
    opt = torch.optim.AdamW(model.parameters(), 1e-4)
    ids = torch.randint(1, 1000, (8, 128), device=device)
    with torch.autocast(device.type, dtype=torch.bfloat16):
        scores = model([ids])[-1]
        loss = torch.nn.functional.cross_entropy(scores.float().reshape(-1, 1000), ids.reshape(-1))
    loss.backward()
    finite = all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    opt.step()
    print(f"amp bf16 step: loss {loss.item():.3f}, gradients finite: {finite}")


def generation(device: torch.device, dry: bool, repeats: int) -> None:
    import transformers

    from b4t.generation import SeqGeneration
    from b4t.models import build_transformer_model

    size = (
        dict(vocab_size=1000, n_embd=64, n_layer=2, n_head=4)
        if dry
        else dict(vocab_size=50257, n_embd=768, n_layer=12, n_head=12)
    )
    cfg = transformers.GPT2Config(n_positions=1024, bos_token_id=None, eos_token_id=None, **size)
    torch.manual_seed(0)
    hf = transformers.GPT2LMHeadModel(cfg).eval()
    with tempfile.TemporaryDirectory() as tmp:
        hf.save_pretrained(tmp)
        ours = build_transformer_model(checkpoint_path=tmp, model="gpt2").eval()
    hf.to(device)
    ours.to(device)
    new = 8 if dry else 64
    for batch in (1, 8):
        prompts = torch.randint(2, size["vocab_size"], (batch, 32), device=device)
        gen = SeqGeneration(ours, end_id=None, maxlen=new, mode="beam_search", device=device)

        def run_b4t(gen: SeqGeneration = gen, prompts: torch.Tensor = prompts) -> list:
            return gen.batch_generate(prompts.tolist(), topk=1)

        def run_hf(prompts: torch.Tensor = prompts) -> list:
            out = hf.generate(
                prompts, attention_mask=torch.ones_like(prompts), max_new_tokens=new,
                min_new_tokens=new, do_sample=False, pad_token_id=0,
            )  # fmt: skip
            return out[:, 32:].tolist()

        times: dict[str, list[float]] = {"b4t": [], "hf": []}
        with torch.no_grad():
            same = run_b4t() == run_hf()
            for _ in range(repeats):
                for key, fn in (("b4t", run_b4t), ("hf", run_hf)):
                    sync(device)
                    start = time.perf_counter()
                    fn()
                    sync(device)
                    times[key].append(time.perf_counter() - start)
        b4t = batch * new / statistics.median(times["b4t"])
        ref = batch * new / statistics.median(times["hf"])
        print(
            f"generation greedy batch {batch}: b4t {b4t:.1f} tok/s, generate() {ref:.1f} tok/s, "
            f"ratio {b4t / ref:.2f}x, same output: {same}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="tiny configs on the CPU")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if args.dry_run:
        device = torch.device("cpu")
    elif not torch.cuda.is_available():
        raise SystemExit("no CUDA device: use --dry-run for the CPU wiring check")
    else:
        device = torch.device("cuda")
    name = torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu"
    print(f"torch {torch.__version__} on {name}{' (dry run)' if args.dry_run else ''}")
    start = time.perf_counter()
    parity(device, args.dry_run)
    amp_step(device, args.dry_run)
    generation(device, args.dry_run, 1 if args.dry_run else args.repeats)
    print(f"done in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
