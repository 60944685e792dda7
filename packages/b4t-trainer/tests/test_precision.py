"""The Precision adapter: the fp16 scaler protocol, checked with a recording scaler on CPU."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from b4t.trainer.precision import Precision


class RecordingScaler:
    """Stands in for torch.amp.GradScaler: scales by 8 and records the call order."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def scale(self, loss):
        self.calls.append("scale")
        return loss * 8

    def unscale_(self, optimizer):
        self.calls.append("unscale_")
        for group in optimizer.param_groups:
            for p in group["params"]:
                p.grad.div_(8)

    def step(self, optimizer):
        self.calls.append("step")
        optimizer.step()

    def update(self):
        self.calls.append("update")

    def state_dict(self):
        return {"scale": 8.0}

    def load_state_dict(self, state):
        self.calls.append(f"load {state['scale']}")


def test_fp16_protocol_unscales_before_clipping() -> None:
    layer = nn.Linear(3, 1, bias=False)
    with torch.no_grad():
        layer.weight.fill_(1.0)
    opt = torch.optim.SGD(layer.parameters(), lr=1.0)
    precision = Precision(None, torch.device("cpu"))
    precision.scaler = RecordingScaler()
    loss = (layer(torch.ones(1, 3)) * 10).sum()  # grad 10 per weight, norm 10 * sqrt(3)
    precision.backward(loss)
    torch.testing.assert_close(layer.weight.grad, torch.full((1, 3), 80.0))  # scaled
    precision.step(opt, layer.parameters(), clip_grad_norm=1.0)
    assert precision.scaler.calls == ["scale", "unscale_", "step", "update"]
    # unscaled (10 each) then clipped to norm 1: each weight moved by 1/sqrt(3)
    torch.testing.assert_close(layer.weight, torch.full((1, 3), 1 - 3**-0.5))
    assert precision.state_dict() == {"scale": 8.0}
    precision.load_state_dict({"scale": 4.0})
    assert precision.scaler.calls[-1] == "load 4.0"


def test_full_precision_and_bf16_have_no_scaler() -> None:
    for mode in (None, "bf16"):
        precision = Precision(mode, torch.device("cpu"))
        assert precision.scaler is None and precision.state_dict() is None
    with Precision("bf16", torch.device("cpu")).autocast():
        assert torch.mm(torch.ones(2, 2), torch.ones(2, 2)).dtype == torch.bfloat16
    with pytest.raises(ValueError, match="needs the model on a CUDA device"):
        Precision("fp16", torch.device("cpu"))
