"""Moving weights between a :class:`Transformer` and checkpoint files, by weight map.

Loading is strict by default: missing, unexpected and mis-shaped tensors are all listed
in one :class:`CheckpointError`. With ``strict=False`` the same lists are returned in a
:class:`LoadReport` and emitted as a warning. Parameters still on the ``meta`` device
after a load (not in the checkpoint, or deliberately not mapped) are materialised and
initialised once; loaded ones are assigned without a prior random initialisation.
"""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from b4t.layers import LayerNorm, RMSNorm, get_sinusoid_encoding_table
from b4t.models.checkpoint import CheckpointError, read_checkpoint, release_pages, write_checkpoint
from b4t.models.weight_map import Concat, FirstOf, WeightSource, strip_prefix

__all__ = [
    "LoadReport",
    "check_prefix",
    "init_weights",
    "load_into",
    "materialize_meta",
    "save_from",
]


# buffers bert4torch 0.2.5's save_weights writes beside the weights: recomputed from
# the config by 0.2.5 (and b4t), never read from a checkpoint
SEED_BUFFER_KEYS = (
    r"relative_positions_encoding\.(cos|sin)_position$",  # rotary tables (RoFormer, GAU)
    r"relative_positions\.relative_position$",  # T5 / NEZHA relative position ids
    r"relative_positions_encoding\.position_embeddings$",  # NEZHA's fixed sinusoid table
    r"(^|\.)pos_embeddings\.inv_freq$",  # Transformer-XL / XLNet sinusoid frequencies
)


@dataclass
class LoadReport:
    """What a load did not match. Empty lists mean a clean load."""

    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)
    unused_optional: list[str] = field(default_factory=list)
    initialised: list[str] = field(default_factory=list)  # not in the map: random init

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)

    def describe(self, source: str = "checkpoint") -> str:
        """The mismatches as lines a user reads (missing, unexpected, shapes), headed by
        ``source``."""
        parts = [f"{source} does not match the model:"]
        if self.missing:
            parts.append(f"  missing ({len(self.missing)}): " + "; ".join(self.missing))
        if self.unexpected:
            parts.append(f"  unexpected ({len(self.unexpected)}): " + ", ".join(self.unexpected))
        if self.mismatched:
            parts.append(f"  wrong shape ({len(self.mismatched)}): " + "; ".join(self.mismatched))
        return "\n".join(parts)


def _init_param(module: nn.Module, name: str, param: torch.Tensor, std: float) -> None:
    with torch.no_grad():
        if getattr(module, "zero_init", False) or name == "bias":
            param.zero_()
        elif isinstance(module, (LayerNorm, RMSNorm, nn.LayerNorm)):
            param.fill_(1.0)
        elif isinstance(module, nn.Embedding) and not param.requires_grad:
            n, d = param.shape
            param.copy_(get_sinusoid_encoding_table(n, d).to(param.dtype))
        elif param.dim() >= 2:
            param.normal_(0.0, std)
        else:
            param.zero_()


def init_weights(model: nn.Module, std: float = 0.02, skip: Sequence[nn.Module] = ()) -> None:
    """Initialise parameters the BERT way (normal(0, std), zero bias, unit norm gain).

    Modules in ``skip`` (and their children), e.g. user-given ``layer_add_embs``, keep theirs.
    """
    skipped = {id(m) for s in skip for m in s.modules()}
    for module in model.modules():
        if id(module) in skipped:
            continue
        for name, param in module.named_parameters(recurse=False):
            _init_param(module, name, param, std)


def materialize_meta(
    model: nn.Module,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    std: float = 0.02,
) -> list[str]:
    """Give every parameter still on ``meta`` real storage and initialise it; return names."""
    done: list[str] = []
    for mod_name, module in model.named_modules():
        for name, param in list(module.named_parameters(recurse=False)):
            if not param.is_meta:
                continue
            real = torch.empty(param.shape, dtype=dtype or param.dtype, device=device or "cpu")
            new = nn.Parameter(real, requires_grad=param.requires_grad)
            setattr(module, name, new)
            _init_param(module, name, new, std)
            done.append(f"{mod_name}.{name}" if mod_name else name)
        for name, buf in list(module.named_buffers(recurse=False)):
            if buf.is_meta:
                raise CheckpointError(f"buffer {mod_name}.{name} is on meta and has no initialiser")
    return done


def _vocab_transform(
    tensor: torch.Tensor,
    keep_tokens: Sequence[int] | None,
    compound_tokens: Sequence[Sequence[int]] | None,
) -> torch.Tensor:
    if keep_tokens is not None:
        idx = torch.as_tensor(list(keep_tokens), dtype=torch.long, device=tensor.device)
        if idx.numel() and (int(idx.max()) >= tensor.shape[0] or int(idx.min()) < 0):
            raise ValueError(
                f"keep_tokens holds id {int(idx.max())} but the checkpoint vocabulary has "
                f"{tensor.shape[0]} rows"
            )
        tensor = tensor[idx]
    if compound_tokens:
        rows = []
        for ids in compound_tokens:
            idx = torch.as_tensor(list(ids), dtype=torch.long, device=tensor.device)
            if not idx.numel():
                raise ValueError("compound_tokens holds an empty id list")
            if int(idx.max()) >= tensor.shape[0] or int(idx.min()) < -tensor.shape[0]:
                # as bert4torch 0.2.5: a piece outside the vocabulary -> the mean of all rows
                warnings.warn(
                    f"compound_tokens entry {list(ids)} has ids outside the "
                    f"{tensor.shape[0]}-row vocabulary: its row is the mean of every row",
                    stacklevel=4,
                )
                rows.append(tensor.mean(0))
                continue
            rows.append(tensor[idx].mean(0))
        tensor = torch.cat([tensor, torch.stack(rows)], 0)
    return tensor


def _keys(src: WeightSource) -> list[str]:
    if isinstance(src, (Concat, FirstOf)):
        return list(src.keys)
    return [] if src is None else [src]


def load_into(
    model: nn.Module,
    path: Any,
    mapping: dict[str, WeightSource] | None = None,
    strict: bool = True,
    keep_tokens: Sequence[int] | None = None,
    compound_tokens: Sequence[Sequence[int]] | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    state: dict[str, torch.Tensor] | None = None,
    spans: dict | None = None,
    quiet: bool = False,
) -> LoadReport:
    """Load checkpoint ``path`` (file, folder, index, list of files or a state dict).

    ``mapping`` defaults to ``model.variable_mapping()``; ``mapping={}`` means b4t's own
    parameter names (what ``save_weights(path, mapping={})`` writes). Keys with or
    without the variant's prefix (``bert.``) both match. Raises :class:`CheckpointError`
    listing every problem when ``strict``; otherwise warns with the same list (unless
    ``quiet``) and returns it. A load that matches no tensor at all is always an error.
    ``state`` / ``spans``: the checkpoint already read from ``path`` (by the builder).
    """
    source = _source_name(path)
    if spans is None:
        spans = {}
    if state is None:
        state = dict(path) if isinstance(path, dict) else read_checkpoint(path, spans=spans)
    params = model.state_dict(keep_vars=True)
    mapping, dropped, tied = _checkpoint_names(model, params, mapping, state)
    loader = _Loader(state, spans, params, keep_tokens, compound_tokens, device, dtype, model)
    for name, src in mapping.items():
        if src is not None:
            loader.load(name, src)
    loader.check_tied(tied)
    variant = getattr(model, "variant", None)
    loader.sort_unused(dropped, variant.optional_keys if variant is not None else ())
    report = loader.report
    if not loader.new_state and params:
        raise CheckpointError(
            f"{source}: no tensor matched the model ({len(state)} checkpoint keys, e.g. "
            f"{', '.join(list(state)[:3]) or 'none'}; model names e.g. "
            f"{', '.join(list(mapping.values())[:3]) if mapping else 'none'}). "
            "Wrong model=, or a file saved under other names (mapping={} loads b4t's own)"
        )
    if not report.ok:
        if strict:
            raise CheckpointError(
                report.describe(source) + "\n(pass strict=False to load what matches)"
            )
        if not quiet:
            warnings.warn(report.describe(source), stacklevel=2)
    model.load_state_dict(loader.new_state, strict=False, assign=True)
    report.initialised = _initialise_rest(model, mapping, device, dtype)
    if report.initialised and not quiet:
        warnings.warn(
            "initialised randomly (no checkpoint tensor is mapped to them): "
            + ", ".join(report.initialised),
            stacklevel=2,
        )
    return report


def _source_name(path: Any) -> str:
    """How errors name the checkpoint: its file(s), or ``state dict``."""
    if isinstance(path, dict):
        return "state dict"
    if isinstance(path, (list, tuple)):
        return ", ".join(str(p) for p in path)
    return str(path)


def _checkpoint_names(
    model: nn.Module,
    params: dict[str, torch.Tensor],
    mapping: dict[str, WeightSource] | None,
    state: dict[str, torch.Tensor],
) -> tuple[dict[str, WeightSource], set[str], dict[str, str]]:
    """``(mapping, dropped, tied)``: b4t name -> checkpoint source for the model's own
    parameters; checkpoint keys of parts the model leaves out on purpose; checkpoint key
    -> the b4t parameter it must equal (a tied weight). Without the variant's prefix
    (``bert.``) when the checkpoint's keys have none."""
    dropped: set[str] = set()
    tied: dict[str, str] = {}
    tied_names = getattr(model, "tied_parameters", dict)()
    if mapping is not None and not mapping:
        mapping = {name: name for name in params}
    if mapping is None:
        full = model.variable_mapping(existing_only=False)  # type: ignore[operator]
        mapping = {k: v for k, v in full.items() if k in params}
        for name, src in full.items():
            if name in params or src is None:
                continue
            if name in tied_names:
                for key in _keys(src):
                    tied[key] = tied_names[name]
            else:
                dropped.update(_keys(src))
    variant = getattr(model, "variant", None)
    prefix = variant.prefix if variant is not None else ""
    if prefix and not any(k.startswith(prefix + ".") for k in state):
        mapping = {k: strip_prefix(v, prefix) for k, v in mapping.items()}
        dropped = {str(strip_prefix(k, prefix)) for k in dropped}
        tied = {str(strip_prefix(k, prefix)): v for k, v in tied.items()}
    return mapping, dropped, tied


@dataclass
class _Loader:
    """One load: checkpoint tensors in, the model's new state and the report out."""

    state: dict[str, torch.Tensor]
    spans: dict
    params: dict[str, torch.Tensor]
    keep_tokens: Sequence[int] | None
    compound_tokens: Sequence[Sequence[int]] | None
    device: torch.device | str | None
    dtype: torch.dtype | None
    model: nn.Module
    report: LoadReport = field(default_factory=LoadReport)
    used: set[str] = field(default_factory=set)
    new_state: dict[str, torch.Tensor] = field(default_factory=dict)
    starts: set[int] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.vocab_params = set(getattr(self.model, "vocab_params", ()))
        self.transform = getattr(self.model, "transform_loaded", None)

    def _vocab(self, name: str, tensor: torch.Tensor) -> torch.Tensor:
        """``keep_tokens`` / ``compound_tokens`` applied to a vocabulary-indexed tensor."""
        if name in self.vocab_params and (self.keep_tokens is not None or self.compound_tokens):
            return _vocab_transform(tensor, self.keep_tokens, self.compound_tokens)
        return tensor

    def _read(self, name: str, src: WeightSource) -> tuple[list[str], torch.Tensor] | None:
        """The checkpoint keys and tensor feeding parameter ``name`` (None: missing)."""
        if name not in self.params:
            self.report.missing.append(f"{name} (no such parameter in the model)")
            return None
        if isinstance(src, FirstOf):
            self.used.update(k for k in src.keys if k in self.state)
            src = src.pick(self.state) or src.keys[0]
        keys = list(src.keys) if isinstance(src, Concat) else [src]
        absent = [k for k in keys if k not in self.state]
        if absent:
            self.report.missing.append(f"{', '.join(absent)} (for {name})")
            return None
        self.used.update(keys)
        tensors = [self.state[k] for k in keys]
        if not isinstance(src, Concat):
            return keys, tensors[0]
        for key in keys:  # the sources were copied: give their file pages back
            if key in self.spans:
                release_pages(self.spans[key])
        return keys, src.load(tensors)

    def load(self, name: str, src: WeightSource) -> None:
        """Parameter ``name`` from ``src``: read, transformed, checked, placed."""
        found = self._read(name, src)
        if found is None:
            return
        keys, tensor = found
        tensor = self._vocab(name, tensor)
        if self.transform is not None:
            tensor = self.transform(name, tensor)
        target = self.params[name]
        if tuple(tensor.shape) != tuple(target.shape):
            self.report.mismatched.append(
                f"{'+'.join(keys)}: checkpoint {tuple(tensor.shape)} vs model "
                f"{tuple(target.shape)} ({name})"
            )
            return
        if target.is_meta:
            device, dtype = self.device or tensor.device, self.dtype or tensor.dtype
            tensor = tensor.to(device=device, dtype=dtype)
        else:
            tensor = tensor.to(device=target.device, dtype=target.dtype)
        if tensor.numel() and tensor.data_ptr() in self.starts:
            # two names of one stored tensor (a tied .bin): the model keeps them apart
            tensor = tensor.clone()
        self.starts.add(tensor.data_ptr())
        self.new_state[name] = tensor

    def check_tied(self, tied: dict[str, str]) -> None:
        """A checkpoint tensor of a tied weight must equal the loaded one it is tied to."""
        for key, name in tied.items():
            loaded = self.new_state.get(name)
            if key not in self.state or key in self.used or loaded is None:
                continue
            self.used.add(key)
            tensor = self._vocab(name, self.state[key])
            if tuple(tensor.shape) != tuple(loaded.shape) or not torch.equal(
                tensor.to(loaded.device, loaded.dtype), loaded
            ):
                self.report.mismatched.append(
                    f"{key} differs from the tensor loaded into {name}, but this model ties "
                    "them (an untied checkpoint: build without tie_emb_prj_weight=True)"
                )

    def sort_unused(self, dropped: set[str], optional_keys: Sequence[str]) -> None:
        """Checkpoint keys nothing read: optional (left out on purpose) or unexpected."""
        optional = [re.compile(p) for p in (*optional_keys, *SEED_BUFFER_KEYS)]
        for key in self.state:
            if key in self.used:
                continue
            if key in dropped or any(p.search(key) for p in optional):
                self.report.unused_optional.append(key)
            else:
                self.report.unexpected.append(key)


def _initialise_rest(
    model: nn.Module,
    mapping: dict[str, WeightSource],
    device: torch.device | str | None,
    dtype: torch.dtype | None,
) -> list[str]:
    """Materialise what is still on the meta device; the trainable parameters nothing
    was mapped to (frozen ones, fixed tables and weightless norms, have a fixed init)."""
    std = getattr(getattr(model, "config", None), "initializer_range", 0.02)
    fresh = materialize_meta(model, device, dtype, std)
    return [
        n
        for n in fresh
        if n not in mapping
        and model.get_parameter(n).requires_grad
        and not getattr(model.get_submodule(n.rpartition(".")[0]), "zero_init", False)
    ]


def check_prefix(prefix: str | None) -> None:
    """bert4torch's ``prefix=`` of ``load_weights`` / ``save_weights``: only ``''`` (the
    checkpoint layout, b4t's default) or None; a built model has no sub-model to prefix."""
    if prefix not in (None, ""):
        raise ValueError(
            f"prefix={prefix!r}: a built b4t model has no sub-model to prefix; prefix='' "
            "(the checkpoint layout) is the default here"
        )


def save_from(
    model: nn.Module, path: str | Path, mapping: dict[str, WeightSource] | None = None
) -> Path:
    """Write ``model``'s weights under their checkpoint names (the inverse of the weight map).

    ``path`` is a folder (``model.safetensors`` and, when the model came from a
    ``config.json``, an updated ``config.json`` are written there) or a ``.safetensors``
    / ``.bin`` file. Several parameters may map to one key (``albert_unshared``: every
    layer to ALBERT's one shared layer); that works while they are equal, and is a
    ``ValueError`` once they differ, since the layout cannot hold them: save under
    b4t's own names then (``mapping={n: n for n in model.state_dict()}``, loaded back
    with the same ``mapping``).
    """
    if mapping is None:
        mapping = model.variable_mapping()  # type: ignore[operator]
    elif not mapping:
        mapping = {name: name for name in model.state_dict()}
    out: dict[str, torch.Tensor] = {}
    writer: dict[str, str] = {}  # checkpoint key -> the parameter that filled it

    def put(key: str, tensor: torch.Tensor, name: str) -> None:
        if key not in out:
            out[key], writer[key] = tensor, name
        elif not torch.equal(out[key], tensor):
            raise ValueError(
                f"{writer[key]!r} and {name!r} both map to checkpoint key {key!r} but hold "
                "different values (layers trained apart?); this layout keeps one tensor per "
                "key. Save under b4t's own names instead: "
                "save_weights(path, mapping={n: n for n in model.state_dict()})"
            )

    for name, tensor in model.state_dict().items():
        src = mapping.get(name)
        if src is None:
            continue
        if isinstance(src, Concat):
            for key, part in zip(src.keys, src.save(tensor), strict=True):
                put(key, part, name)
        elif isinstance(src, FirstOf):
            put(src.keys[0], tensor, name)
        else:
            put(src, tensor, name)
    if not out:
        raise ValueError(f"save_weights({path}): the mapping names none of the model's tensors")
    written = write_checkpoint(out, path)
    config = getattr(model, "config", None)
    if written.parent == Path(path) and config is not None and config.raw:
        raw = dict(config.raw)
        mlm = getattr(model, "mlm", None)
        if mlm is not None and getattr(mlm, "decoder", None) is not None:
            raw["tie_word_embeddings"] = False  # the file holds the decoder apart
        raw["vocab_size"] = config.vocab_size
        (written.parent / "config.json").write_text(json.dumps(raw, indent=2), encoding="utf-8")
    return written
