"""Gradient accumulation, clipping, mixed precision, schedules and EMA."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from b4t.trainer import (
    EMA,
    ExponentialMovingAverage,
    LambdaCallback,
    Trainer,
    extend_with_exponential_moving_average,
    get_constant_schedule_with_warmup,
    get_cosine_schedule_with_warmup,
    get_linear_schedule_with_warmup,
)


def _train(net, x, y, batch_size, accumulation, steps, momentum=0.9):
    net.compile(
        nn.CrossEntropyLoss(),
        torch.optim.SGD(net.parameters(), lr=0.5, momentum=momentum),
        grad_accumulation_steps=accumulation,
    )
    loader = DataLoader(TensorDataset(x, y), batch_size=batch_size)
    net.fit(loader, epochs=1, steps_per_epoch=steps, verbose=0)
    return net


@pytest.mark.parametrize("k", [2, 4])
def test_accumulating_k_steps_equals_one_step_on_k_times_the_batch(tiny_net, data, k) -> None:
    x, y = data(4 * k * 2)
    torch.manual_seed(1)
    ref = tiny_net()
    acc = tiny_net()
    acc.load_state_dict(ref.state_dict())
    _train(ref, x, y, batch_size=4 * k, accumulation=1, steps=2)
    _train(acc, x, y, batch_size=4, accumulation=k, steps=2 * k)
    for (name, a), b in zip(acc.state_dict().items(), ref.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6, msg=name)


def test_no_optimizer_step_before_the_accumulation_boundary(tiny_net, data) -> None:
    x, y = data(12)
    net = tiny_net()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    _train(net, x, y, batch_size=4, accumulation=4, steps=3)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    assert any(p.grad is not None for p in net.parameters())


def test_clip_grad_norm_bounds_the_update(tiny_net, data) -> None:
    x, y = data(8)
    torch.manual_seed(0)
    net = tiny_net()
    raw = {}
    before = {n: p.detach().clone() for n, p in net.named_parameters()}

    def grab(global_step, local_step, logs):
        raw.update({n: p.grad.clone() for n, p in net.named_parameters()})

    net.compile(
        lambda y_pred, y_true: nn.functional.cross_entropy(y_pred, y_true) * 100,
        torch.optim.SGD(net.parameters(), lr=1.0),
        clip_grad_norm=0.5,
    )
    net.fit([(x, y)], epochs=1, callbacks=[LambdaCallback(on_after_backward=grab)], verbose=0)
    raw_norm = math.sqrt(sum(float(g.pow(2).sum()) for g in raw.values()))
    assert raw_norm > 0.5
    for name, p in net.named_parameters():
        step = before[name] - p.detach()
        torch.testing.assert_close(step, raw[name] * (0.5 / raw_norm), rtol=1e-4, atol=1e-6)


def test_bf16_autocast_runs_on_cpu(tiny_net, loader) -> None:
    net = tiny_net()
    seen = []
    net.fc2.register_forward_hook(lambda mod, inp, out: seen.append(out.dtype))
    net.compile(
        nn.CrossEntropyLoss(),
        torch.optim.SGD(net.parameters(), lr=0.1),
        mixed_precision="bf16",
    )
    before = net.fc1.weight.detach().clone()
    history = net.fit(loader(n=8), epochs=1, verbose=0)
    assert seen and set(seen) == {torch.bfloat16}
    assert net.fc1.weight.dtype == torch.float32
    assert not torch.equal(before, net.fc1.weight)
    assert math.isfinite(history.history["loss"][0])
    assert net.predict(torch.zeros(2, 6)).dtype == torch.bfloat16


def test_fp16_on_cpu_is_a_clear_error(tiny_net) -> None:
    net = tiny_net()
    with pytest.raises(ValueError, match=r"fp16.*CUDA.*bf16"):
        net.compile(
            nn.CrossEntropyLoss(), torch.optim.SGD(net.parameters(), lr=0.1), mixed_precision="fp16"
        )
    with pytest.raises(ValueError, match="mixed_precision"):
        net.compile(
            nn.CrossEntropyLoss(), torch.optim.SGD(net.parameters(), lr=0.1), mixed_precision="fp8"
        )


def _lrs(scheduler, optimizer, steps):
    out = []
    for _ in range(steps):
        out.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return out


def test_warmup_schedules_by_hand() -> None:
    def opt():
        return torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=2.0)

    o = opt()
    lin = _lrs(get_linear_schedule_with_warmup(o, 2, 10), o, 11)
    assert lin == pytest.approx([0, 1, 2, 1.75, 1.5, 1.25, 1.0, 0.75, 0.5, 0.25, 0])
    o = opt()
    cos = _lrs(get_cosine_schedule_with_warmup(o, 2, 10), o, 11)
    expected = [0, 1] + [2 * 0.5 * (1 + math.cos(math.pi * (s - 2) / 8)) for s in range(2, 11)]
    assert cos == pytest.approx(expected, abs=1e-12)
    assert cos[6] == pytest.approx(1.0)
    o = opt()
    assert _lrs(get_constant_schedule_with_warmup(o, 4), o, 6) == pytest.approx(
        [0, 0.5, 1, 1.5, 2, 2]
    )
    with pytest.raises(ValueError, match="num_warmup_steps"):
        get_linear_schedule_with_warmup(opt(), -1, 10)


def test_several_schedulers_step_once_per_optimizer_step(data) -> None:
    x, y = data(16)
    net = nn.Linear(6, 3)
    trainer = Trainer(net)
    opt = torch.optim.SGD(net.parameters(), lr=1.0)
    halve = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=0.5)
    tenth = torch.optim.lr_scheduler.MultiplicativeLR(opt, lambda epoch: 0.1)
    trainer.compile(nn.CrossEntropyLoss(), opt, scheduler=[halve, tenth], grad_accumulation_steps=2)
    trainer.fit(DataLoader(TensorDataset(x, y), batch_size=2), epochs=1, verbose=0)
    assert halve.last_epoch == tenth.last_epoch == 4  # 8 micro-batches, 4 optimizer steps
    assert opt.param_groups[0]["lr"] == pytest.approx(0.05**4)


def test_exponential_moving_average_by_hand() -> None:
    net = nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        net.weight.fill_(1.0)
    ema = extend_with_exponential_moving_average(net, decay=0.9)
    assert isinstance(ema, ExponentialMovingAverage)
    with torch.no_grad():
        net.weight.fill_(3.0)
    ema.step()  # 0.9 * 1 + 0.1 * 3
    with torch.no_grad():
        net.weight.fill_(5.0)
    ema.step()  # 0.9 * 1.2 + 0.1 * 5
    ema.apply_ema_weights()
    torch.testing.assert_close(net.weight, torch.full((1, 2), 1.58))
    with pytest.raises(RuntimeError, match="already applied"):
        ema.apply_ema_weights()
    ema.restore_raw_weights()
    torch.testing.assert_close(net.weight, torch.full((1, 2), 5.0))


def test_ema_callback_steps_after_each_optimizer_step(tiny_net, loader) -> None:
    net = tiny_net()
    start = {n: p.detach().clone() for n, p in net.named_parameters()}
    weights = []
    cb = EMA(decay=0.5, apply_at_end=True)
    snap = LambdaCallback(
        on_batch_end=lambda g, s, logs: weights.append(
            {n: p.detach().clone() for n, p in net.named_parameters()}
        )
    )
    net.compile(nn.CrossEntropyLoss(), torch.optim.SGD(net.parameters(), lr=0.5))
    net.fit(loader(n=8), epochs=1, callbacks=[snap, cb], verbose=0)
    for name, p in net.named_parameters():
        expected = start[name]
        for w in weights:
            expected = 0.5 * expected + 0.5 * w[name]
        torch.testing.assert_close(p.detach(), expected)


@pytest.mark.parametrize("k", [1, 3])
def test_logged_loss_is_the_back_propagated_loss_divided_by_the_accumulation_steps(
    tiny_net, data, k
) -> None:
    """torch4keras 0.0.4 logs the loss it back-propagates: ``loss / grad_accumulation_steps``.

    Each batch's logged loss is checked against the compiled loss recomputed on that
    batch with the weights the batch was trained with (no optimizer step inside a window).
    """
    x, y = data(24)
    torch.manual_seed(0)
    net = tiny_net()
    seen: list[tuple[float, float]] = []

    def record(step, local, logs) -> None:
        batch_x, batch_y = net.trainer.current_batch
        with torch.no_grad():
            expected = nn.functional.cross_entropy(net(batch_x), batch_y).item() / k
        seen.append((logs["loss"], expected))

    net.compile(
        nn.CrossEntropyLoss(),
        torch.optim.SGD(net.parameters(), lr=0.5),
        grad_accumulation_steps=k,
    )
    # on_after_backward runs before the optimizer step: the weights are the batch's own
    net.fit(
        DataLoader(TensorDataset(x, y), batch_size=4),
        epochs=1,
        callbacks=[LambdaCallback(on_after_backward=record)],
        verbose=0,
    )
    assert len(seen) == 6
    for logged, expected in seen:
        assert logged == pytest.approx(expected, rel=1e-6)
    # the epoch figure is the mean of those batch figures
    assert net.trainer.history.history["loss"][0] == pytest.approx(
        sum(s[0] for s in seen) / len(seen), rel=1e-6
    )
