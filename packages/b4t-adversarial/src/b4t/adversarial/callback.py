"""``AdversarialTraining``: FGM, PGD, VAT and gradient penalty as a b4t-trainer callback.

Everything runs in ``on_after_backward``, after the micro-batch's own backward
and before clipping and the optimizer step. Each extra loss goes through
``trainer.backward``, so it gets the same ``1 / grad_accumulation_steps``
scaling and AMP grad scaler as the main loss, and the extra forward passes run
under the trainer's autocast (``trainer.compute_loss``).

Per micro-batch, with ``L(E)`` the compiled loss at embedding ``E``:

- ``fgm``: grad += dL(E + r)/dtheta, ``r = epsilon * g / ||g||`` (``g`` = embedding grad so far).
- ``pgd``: K ascent steps of size ``alpha`` projected on ``||r|| <= epsilon``; grad +=
  dL(E + r_K)/dtheta only (intermediate gradients are discarded, the real ones restored).
- ``vat``: grad += d L_vat/dtheta (see ``b4t.adversarial.vat``); ``logs['loss_vat']``.
- ``gradient_penalty``: grad += d/dtheta [0.5 * epsilon * ||dL/dE||^2] (bert4keras).

As in bert4torch's hand-written loops, the FGM/PGD direction is the embedding
gradient accumulated so far in the optimizer step (with ``grad_accumulation_steps
> 1`` it includes earlier micro-batches of the same step).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from b4t.adversarial._embedding import find_embedding_parameters
from b4t.adversarial.fgm import FGM
from b4t.adversarial.pgd import PGD
from b4t.adversarial.vat import NORM_TYPES, VAT, select_output
from b4t.trainer import Callback

DEFAULTS: dict[str, dict[str, Any]] = {
    "fgm": {"epsilon": 1.0, "emb_name": "word_embeddings"},
    "pgd": {"epsilon": 1.0, "alpha": 0.3, "K": 3, "emb_name": "word_embeddings"},
    "gradient_penalty": {"epsilon": 1.0, "emb_name": "word_embeddings"},
    "vat": {
        "emb_name": "word_embeddings",
        "noise_var": 1e-5,
        "noise_gamma": 1e-6,
        "adv_step_size": 1e-3,
        "adv_alpha": 1,
        "norm_type": "l2",
        "output_index": 0,
    },
}
MODES = (None, *DEFAULTS)


def _check_settings(mode: str, settings: dict[str, Any]) -> None:
    for key in ("epsilon", "alpha", "noise_var", "adv_step_size", "adv_alpha"):
        if key in settings:
            value = settings[key]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"adversarial[{key!r}] must be a number >= 0, got {value!r}")
    if mode == "pgd" and (
        isinstance(settings["K"], bool) or not isinstance(settings["K"], int) or settings["K"] < 1
    ):
        raise ValueError(f"adversarial['K'] must be an int >= 1, got {settings['K']!r}")
    if mode == "vat" and settings["norm_type"] not in NORM_TYPES:
        raise ValueError(
            f"adversarial['norm_type'] must be one of {NORM_TYPES}, got {settings['norm_type']!r}"
        )


class AdversarialTraining(Callback):
    """Adversarial training / gradient penalty through the trainer's ``on_after_backward``.

    Args:
        mode: ``'fgm'``, ``'pgd'``, ``'vat'``, ``'gradient_penalty'`` or ``None`` (off).
        adversarial: settings for the mode (defaults in ``DEFAULTS``); an unknown key is
            an error. Not modified.
    """

    def __init__(self, mode: str | None = None, adversarial: Mapping[str, Any] | None = None):
        if mode not in MODES:
            raise ValueError(f"unknown adversarial mode {mode!r}; choose one of {MODES}")
        given = dict(adversarial or {})
        self.mode = mode
        self.adversarial: dict[str, Any] = {}
        if mode is not None:
            unknown = sorted(set(given) - set(DEFAULTS[mode]))
            if unknown:
                raise ValueError(
                    f"unknown setting(s) {unknown} for mode {mode!r}; "
                    f"known: {sorted(DEFAULTS[mode])}"
                )
            self.adversarial = {**DEFAULTS[mode], **given}
            _check_settings(mode, self.adversarial)
        self.attacker: FGM | PGD | VAT | None = None

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        """Build the attacker for ``trainer.module`` (fails early on a bad ``emb_name``)."""
        if self.mode is None:
            return
        module = self.trainer.module
        if self.mode == "vat":
            self.attacker = VAT(module, **self.adversarial)
        else:
            find_embedding_parameters(module, self.adversarial["emb_name"])
            if self.mode == "fgm":
                self.attacker = FGM(module)
            elif self.mode == "pgd":
                self.attacker = PGD(module)

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        """Remove VAT's forward hook."""
        if isinstance(self.attacker, VAT):
            self.attacker.remove()
        self.attacker = None

    def on_after_backward(
        self, global_step: int, local_step: int, logs: dict[str, Any] | None = None
    ) -> None:
        """Add this micro-batch's adversarial gradient to the parameters' ``.grad``."""
        if self.mode is None:
            return
        if self.attacker is None and self.mode != "gradient_penalty":
            self.on_train_begin()
        X, y = self.trainer.current_batch
        if self.mode == "fgm":
            self._fgm(X, y)
        elif self.mode == "pgd":
            self._pgd(X, y)
        elif self.mode == "gradient_penalty":
            self._gradient_penalty(X, y)
        else:
            self._vat(X, y, logs)

    def _fgm(self, X: Any, y: Any) -> None:
        assert isinstance(self.attacker, FGM)
        self.attacker.attack(**self.adversarial)
        try:
            loss, _ = self.trainer.compute_loss(X, y)
            self.trainer.backward(loss)
        finally:
            self.attacker.restore(**self.adversarial)

    def _pgd(self, X: Any, y: Any) -> None:
        assert isinstance(self.attacker, PGD)
        steps = self.adversarial["K"]
        self.attacker.backup_grad()
        try:
            for t in range(steps):
                self.attacker.attack(**self.adversarial, is_first_attack=(t == 0))
                if t != steps - 1:
                    self.attacker.zero_grad()
                else:
                    self.attacker.restore_grad()
                loss, _ = self.trainer.compute_loss(X, y)
                self.trainer.backward(loss)
        finally:
            if self.attacker.grad_backup:  # an exception before the last step
                self.attacker.restore_grad()
            self.attacker.restore(**self.adversarial)

    def _gradient_penalty(self, X: Any, y: Any) -> None:
        params = [
            p
            for _, p in find_embedding_parameters(self.trainer.module, self.adversarial["emb_name"])
        ]
        loss, _ = self.trainer.compute_loss(X, y)
        grads = torch.autograd.grad(loss, params, create_graph=True, allow_unused=True)
        terms = [g.float().pow(2).sum() for g in grads if g is not None]
        if not terms:  # the loss does not depend on the embedding
            return
        penalty = torch.stack(terms).sum()
        if not penalty.requires_grad:
            return
        self.trainer.backward(0.5 * self.adversarial["epsilon"] * penalty)

    def _vat(self, X: Any, y: Any, logs: dict[str, Any] | None) -> None:
        assert isinstance(self.attacker, VAT)
        outputs: list[Any] = []
        handle = self.trainer.module.register_forward_hook(lambda m, i, o: outputs.append(o))
        try:

            def forward() -> Any:
                outputs.clear()
                self.trainer.compute_loss(X, y)
                if not outputs:
                    raise RuntimeError("trainer.compute_loss did not call trainer.module")
                return outputs[-1]

            logits = select_output(forward(), self.adversarial["output_index"])
            loss = self.attacker.adversarial_loss(forward, logits)
        finally:
            handle.remove()
        if loss is None:
            return
        self.trainer.backward(loss)
        if logs is not None:
            logs["loss_vat"] = float(loss.detach())
