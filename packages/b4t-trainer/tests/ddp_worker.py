"""Run by test_ddp.py under torchrun: train a tiny model with BaseModelDDP on gloo.

Usage: torchrun --nproc_per_node 2 ddp_worker.py OUT_DIR
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

from b4t.trainer import BaseModelDDP, Logger, ResumeCheckpoint, seed_everything

GLOBAL_BATCH = 8  # samples per optimizer step, over all ranks and micro-batches
ACCUMULATION = 2  # each rank: micro-batches of GLOBAL_BATCH / (world * ACCUMULATION)
SAMPLES = 32


class Head(nn.Linear):
    """The last layer, with a method users call on the wrapped model (like ``crf.decode``)."""

    def decode(self, scores: torch.Tensor) -> torch.Tensor:
        return scores.argmax(-1)


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(6, 16), nn.Tanh())
        self.head = Head(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def build_model() -> nn.Module:
    torch.manual_seed(0)
    return Net()


def build_data() -> TensorDataset:
    gen = torch.Generator().manual_seed(1)
    return TensorDataset(
        torch.randn(SAMPLES, 6, generator=gen), torch.randint(0, 3, (SAMPLES,), generator=gen)
    )


def compile_kwargs(module: nn.Module) -> dict:
    return {
        "loss": nn.CrossEntropyLoss(),
        "optimizer": torch.optim.SGD(module.parameters(), lr=0.5, momentum=0.9),
        "metrics": ["accuracy"],
    }


def main(out: Path) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    seed_everything(0)
    model = BaseModelDDP(build_model(), master_rank=0)
    model.compile(**compile_kwargs(model.module), grad_accumulation_steps=ACCUMULATION)
    dataset = build_data()
    sampler = DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=False)
    loader = DataLoader(dataset, batch_size=GLOBAL_BATCH // (world * ACCUMULATION), sampler=sampler)
    model.fit(
        loader,
        epochs=2,
        callbacks=[Logger(out / f"log_rank{rank}.txt"), ResumeCheckpoint(out / f"ckpt_rank{rank}")],
        verbose=1,
    )
    model.save_weights(out / "weights.pt")  # rank 0 only
    torch.save(model.module.state_dict(), out / f"raw_rank{rank}.pt")
    torch.save(model.trainer.history.history, out / f"history_rank{rank}.pt")
    # bert4torch issue #134: attributes of the wrapped module are reachable on the wrapper
    scores = model.predict(dataset.tensors[0])
    torch.save(model.head.decode(scores), out / f"decoded_rank{rank}.pt")
    print(f"rank {rank} done", flush=True)
    dist.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
