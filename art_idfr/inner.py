"""
Restorers *inside* a frozen target (not in the paper): small trainable parts that act at many layers of the
network while the target's own tensors (weights and BatchNorm statistics) never change.

* ``kind="lora"`` — a low-rank weight delta on each named ``nn.Conv2d`` / ``nn.Linear``: the layer computes
  ``W·x + (B·A)·x`` (LoRA, Hu et al. 2022), with ``A`` of rank ``rank`` and ``B`` zero-initialised, so that the
  defended model starts exactly as the undefended one. ``W`` itself is never touched: the delta is added to the
  layer's output by a forward hook (for a convolution, ``A`` is a ``rank``-channel convolution with the layer's
  kernel, stride, padding and dilation and ``B`` a 1×1 one, i.e. ``conv(x, B·A)`` computed in two cheap steps).
  At full rank (``rank >= min(out, in·k·k)``) the delta can express any change of ``W``.
* ``kind="adapter"`` — a zero-initialised residual bottleneck after each named module:
  ``h ← h + up(relu(conv3x3(relu(down(h)))))`` (1×1 convolutions down to ``width``·C channels and back; ``Linear``
  layers for a flat ``h``), ``up`` zero-initialised.
* ``norm_affine=True`` (with either kind) — a zero-initialised per-channel scale and shift delta on every
  ``BatchNorm`` of the model: the layer computes ``γ·x̂ + β + (δγ·x̂ + δβ)`` with ``x̂`` normalised by the layer's
  own running statistics (which stay frozen). The retrained target trains ``γ, β`` too; this lets the restorer reach
  them without touching the target's tensors.

Default places (``layers=None``), per architecture: LoRA on every ``Conv2d`` and ``Linear`` of the model (stem and
head included); adapters after every residual block (torchvision's ``BasicBlock`` / ``Bottleneck`` /
``InvertedResidual``, the zoo's ResNets), else after every ``MaxPool2d`` (VGG blocks); any other model: name them.

The hooks exist only while :meth:`InnerRestorer.intercept` is active (inside the defended model's forward pass,
:func:`art_idfr.defend` with ``inner=``), so the bare model object behaves unchanged everywhere else. The restorer
records the shapes of every layer it acts on and a digest of the target's weights: attaching it to another model
raises ``ValueError``. Training: :class:`art_idfr.AdaptiveDenoiserTrainer` with ``inner=`` (``train_inner=True``).
"""
from __future__ import annotations

import contextlib
import logging
import math
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from art_idfr import checkpoint
from art_idfr._names import INNER_KINDS
from art_idfr._utils import check_device_type, device_of, eval_mode, model_digest, resolve_device

logger = logging.getLogger(__name__)

#: class names of the residual blocks after which adapters go by default
_BLOCK_NAMES = ("BasicBlock", "Bottleneck", "InvertedResidual")


class LowRankDelta(nn.Module):
    """``(B·A)·x`` for one ``Conv2d`` (groups 1: two convolutions; grouped: the delta kernel) or ``Linear``."""

    is_restorer_part = True  # find_embedding_layer looks past these
    reads_input = True  # the delta is a function of the layer's input

    def __init__(self, point: Dict[str, Any], rank: int) -> None:
        super().__init__()
        self.point = dict(point)
        if point["type"] == "Linear":
            self.a, self.b = nn.Linear(point["in"], rank, bias=False), nn.Linear(rank, point["out"], bias=False)
        elif point["groups"] == 1:
            self.a = nn.Conv2d(point["in"], rank, point["kernel"], point["stride"], point["padding"],
                               point["dilation"], bias=False, padding_mode=point["padding_mode"])
            self.b = nn.Conv2d(rank, point["out"], 1, bias=False)
        else:  # grouped / depthwise: rank over (in/groups · k · k), the delta kernel built each pass
            fan_in = point["in"] // point["groups"] * point["kernel"][0] * point["kernel"][1]
            self.a = nn.Linear(fan_in, rank, bias=False)
            self.b = nn.Linear(rank, point["out"], bias=False)
        nn.init.zeros_(self.b.weight)  # B = 0: the delta starts at zero

    def forward(self, layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
        p = self.point
        if p["type"] == "Linear" or p["groups"] == 1:
            return self.b(self.a(x))
        return layer._conv_forward(x, self.delta_weight(), None)

    def delta_weight(self) -> torch.Tensor:
        """``B·A`` as a weight of the layer's own shape (the delta is linear in the input, so it folds into W)."""
        p, a, b = self.point, self.a.weight, self.b.weight
        if p["type"] == "Linear":
            return b @ a
        if p["groups"] == 1:  # 1x1 conv B after conv A: one kernel, A's stride / padding / dilation
            return torch.einsum("or,rikl->oikl", b[:, :, 0, 0], a)
        k = p["kernel"]
        return (b @ a).reshape(p["out"], p["in"] // p["groups"], k[0], k[1])

    def folded_forward(self, layer: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
        """The layer's forward with ``W + B·A`` in one call: one convolution instead of three (the target's W is read,
        never written)."""
        weight = layer.weight + self.delta_weight().to(layer.weight.dtype)
        if self.point["type"] == "Linear":
            return lambda x: F.linear(x, weight, layer.bias)
        return lambda x: layer._conv_forward(x, weight, layer.bias)


class AffineDelta(nn.Module):
    """``δγ·x̂ + δβ`` per channel for one ``BatchNorm``, ``x̂`` from the layer's frozen running statistics."""

    is_restorer_part = True
    reads_input = True  # x̂ is the layer's normalised input

    def __init__(self, point: Dict[str, Any]) -> None:
        super().__init__()
        self.point = dict(point)
        self.scale = nn.Parameter(torch.zeros(point["num_features"]))  # δγ = 0 and δβ = 0: the identity at the start
        self.shift = nn.Parameter(torch.zeros(point["num_features"]))

    def forward(self, layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
        batch_stats = layer.training or layer.running_mean is None  # a target in train mode: x̂ as the layer sees it
        x_hat = F.batch_norm(x, None if batch_stats else layer.running_mean,
                             None if batch_stats else layer.running_var, training=batch_stats, eps=layer.eps)
        view = (1, -1) + (1,) * (x.dim() - 2)
        return x_hat * self.scale.view(view) + self.shift.view(view)


class ResidualAdapter(nn.Module):
    """A zero-initialised bottleneck whose output is added to a module's output ``h`` (NCHW or (N, D))."""

    is_restorer_part = True
    reads_input = False  # a function of the module's output

    def __init__(self, point: Dict[str, Any], width: float) -> None:
        super().__init__()
        self.point = dict(point)
        c = point["shape"][0]
        w = max(1, round(width * c))
        if len(point["shape"]) == 3:
            self.body = nn.Sequential(nn.Conv2d(c, w, 1), nn.ReLU(), nn.Conv2d(w, w, 3, padding=1), nn.ReLU(),
                                      nn.Conv2d(w, c, 1))
        elif len(point["shape"]) == 1:
            self.body = nn.Sequential(nn.Linear(c, w), nn.ReLU(), nn.Linear(w, c))
        else:
            raise ValueError(f"an adapter needs an (N, C, H, W) or (N, D) output; {point['name']!r} gives "
                             f"(N, {', '.join(map(str, point['shape']))}).")
        nn.init.zeros_(self.body[-1].weight)
        nn.init.zeros_(self.body[-1].bias)

    def forward(self, layer: nn.Module, h: torch.Tensor) -> torch.Tensor:
        return self.body(h)


def _describe_layer(name: str, module: nn.Module) -> Dict[str, Any]:
    """What a low-rank (or affine) delta needs to know of its layer (and what a later attach must find again)."""
    if _is_norm(module):
        return {"name": name, "type": type(module).__name__, "num_features": module.num_features}
    if isinstance(module, nn.Linear):
        return {"name": name, "type": "Linear", "in": module.in_features, "out": module.out_features}
    if isinstance(module, nn.Conv2d):
        return {"name": name, "type": "Conv2d", "in": module.in_channels, "out": module.out_channels,
                "kernel": list(module.kernel_size), "stride": list(module.stride),
                "padding": module.padding if isinstance(module.padding, str) else list(module.padding),
                "dilation": list(module.dilation), "groups": module.groups, "padding_mode": module.padding_mode}
    raise ValueError(f"a low-rank delta goes on an nn.Conv2d or nn.Linear (an affine delta on a BatchNorm); {name!r} is "
                     f"a {type(module).__name__}.")


def default_layers(model: nn.Module, kind: str) -> List[str]:
    """The default places of ``kind`` in ``model`` (module docstring)."""
    named = [(n, m) for n, m in model.named_modules() if n]
    if kind == "lora":
        found = [n for n, m in named if isinstance(m, (nn.Conv2d, nn.Linear))]
    else:
        found = [n for n, m in named if type(m).__name__ in _BLOCK_NAMES] or \
                [n for n, m in named if isinstance(m, nn.MaxPool2d)]
    if not found:
        raise ValueError(f"no default place for {kind!r} restorers in {type(model).__name__}: pass layers=[...] "
                         f"(module names, e.g. {[n for n, _ in named][:10]}).")
    return found


def norm_layers(model: nn.Module) -> List[str]:
    """Every ``BatchNorm`` of ``model`` (the places of ``norm_affine``)."""
    found = [n for n, m in model.named_modules() if n and _is_norm(m)]
    if not found:
        raise ValueError(f"norm_affine=True, but {type(model).__name__} has no BatchNorm layer.")
    return found


def _output_shapes(model: nn.Module, names: Sequence[str], input_shape: Tuple[int, ...]) -> Dict[str, Any]:
    """Per-sample output shape (and input spatial size) of each named module, from one probe forward pass."""
    modules, shapes, handles = dict(model.named_modules()), {}, []
    for name in names:
        def record(m, args, out, name=name):
            shapes.setdefault(name, {"out": list(out.shape[1:]), "in": list(args[0].shape[1:])})
        handles.append(modules[name].register_forward_hook(record))
    try:
        with eval_mode(model), torch.no_grad():
            model(torch.zeros((1, *input_shape), device=device_of(model)))
    finally:
        for h in handles:
            h.remove()
    missing = [n for n in names if n not in shapes]
    if missing:
        raise ValueError(f"modules {missing} are not run by the model's forward pass.")
    return shapes


class InnerRestorer:
    """
    Trainable restorers inside a frozen target (module docstring): inference and persistence; training is
    :class:`art_idfr.AdaptiveDenoiserTrainer` (``inner=``).

    :param input_shape: Per-sample input shape of the target's ``nn.Module`` (what ART's ``input_shape`` says).
    :param kind: ``"lora"`` (low-rank weight deltas) or ``"adapter"`` (residual bottlenecks).
    :param layers: Module names (as in ``model.named_modules()``); ``None``: the default per architecture.
    :param rank: Rank of each delta (``kind="lora"``), capped per layer at its full rank.
    :param ranks: Per-layer ranks overriding ``rank`` (``{module name: rank}``, ``kind="lora"``): a fixed parameter
        budget spent where it helps most (e.g. more rank in the convolutions, less in a wide ``Linear``).
    :param width: Bottleneck channels as a fraction of the module's channels (``kind="adapter"``).
    :param norm_affine: Also a per-channel scale and shift delta on every ``BatchNorm`` (module docstring).
    :param device_type: ``"gpu"`` or ``"cpu"``.
    """

    #: without gradients (prediction), run each low-rank delta folded into its layer's weight, ``W + B·A`` in one
    #: convolution (same outputs; the target's tensors are read, never written); ``False``: the hooks, as with
    #: gradients (a comparison of speed, or debugging)
    fold_at_inference: bool = True

    def __init__(self, input_shape: Tuple[int, ...], kind: str = "lora", layers: Optional[Sequence[str]] = None,
                 rank: int = 4, width: float = 0.25, norm_affine: bool = False, device_type: str = "gpu",
                 ranks: Optional[Mapping[str, int]] = None) -> None:
        self.input_shape = tuple(int(s) for s in input_shape)
        self.kind, self.rank, self.width, self.norm_affine = kind, int(rank), float(width), bool(norm_affine)
        self.ranks = check_ranks(ranks)
        self.layers = None if layers is None else [str(n) for n in layers]
        self.device_type = device_type
        self._check_params()
        self.points: List[Dict[str, Any]] = []
        self.network: Optional[nn.ModuleDict] = None
        self.target_digest: Optional[str] = None
        self._is_fitted, self.history, self._training_info = False, [], {}

    # ------------------------------------------------------------------ building and attaching
    def build(self, model: nn.Module) -> "InnerRestorer":
        """Create the (identity-initialised) parts for ``model``; records its layer shapes and weight digest."""
        names = list(self.layers if self.layers is not None else default_layers(model, self.kind))
        if self.norm_affine and self.layers is None:
            names += norm_layers(model)
        modules = dict(model.named_modules())
        unknown = [n for n in names if n not in modules or not n]
        if unknown:
            raise ValueError(f"no module named {unknown} in {type(model).__name__}; valid names: "
                             f"{[n for n in modules if n][:30]}...")
        deltas = [n for n in names if not _is_norm(modules[n])]
        stray = sorted(set(self.ranks) - set(deltas))
        if stray:
            raise ValueError(f"ranks names {stray}, which carry no low-rank delta here; the deltas go on {deltas}.")
        shapes = _output_shapes(model, names, self.input_shape)
        points = []
        for name in names:
            described = self.kind == "lora" or _is_norm(modules[name])
            point = _describe_layer(name, modules[name]) if described else {"name": name}
            points.append({**point, "shape": shapes[name]["out"], "in_shape": shapes[name]["in"]})
        self._make_parts(points)
        self.layers, self.target_digest = list(names), model_digest(model)
        self.network.to(device_of(model))
        return self

    def _make_parts(self, points: List[Dict[str, Any]]) -> None:
        def part(p):
            if p.get("type", "").startswith("BatchNorm"):
                return AffineDelta(p)
            if self.kind == "adapter":
                return ResidualAdapter(p, self.width)
            full = min(p["out"], p["in"] // p.get("groups", 1) * _kernel_area(p))
            return LowRankDelta(p, min(self.ranks.get(p["name"], self.rank), full))

        self.points = points
        self.network = nn.ModuleDict({_key(p["name"]): part(p) for p in points})
        self.network.to(resolve_device(self.device_type))

    def check_model(self, model: nn.Module, check_weights: bool = True) -> None:
        """
        ``ValueError`` unless ``model`` is the one this restorer was built for: every layer it acts on exists with
        the recorded type and shape, and (``check_weights``) the weights' digest is the recorded one.
        """
        if self.network is None:
            raise ValueError("InnerRestorer is not built: call build(model), or load(...) a saved one.")
        modules = dict(model.named_modules())
        for p in self.points:
            module = modules.get(p["name"])
            if module is None:
                raise ValueError(f"this InnerRestorer was built for another model: it has no module {p['name']!r}.")
            if "type" in p and _describe_layer(p["name"], module) != _layer_fields(p):
                raise ValueError(f"this InnerRestorer was built for another model: {p['name']!r} is now "
                                 f"{_describe_layer(p['name'], module)}, was {_layer_fields(p)}.")
        if check_weights and self.target_digest is not None and model_digest(model) != self.target_digest:
            raise ValueError("this InnerRestorer was fitted for another model: the target's weights differ from "
                             "the ones it was built on (same layer shapes, other values). A restorer only fits the "
                             "exact frozen target it was trained through.")

    @contextlib.contextmanager
    def intercept(self, model: nn.Module) -> Iterator[None]:
        """While the block runs, ``model``'s named layers carry the restorer's parts (forward hooks, then removed)."""
        if self.network is None:
            raise ValueError("InnerRestorer is not built: call build(model), or load(...) a saved one.")
        modules, handles, folded = dict(model.named_modules()), [], []
        fold = self.fold_at_inference and not torch.is_grad_enabled()  # each delta folded into its layer's W
        try:
            for p in self.points:
                part, layer = self.network[_key(p["name"])], modules[p["name"]]
                if fold and isinstance(part, LowRankDelta) and "forward" not in vars(layer):
                    layer.forward = part.folded_forward(layer)  # an instance attribute, deleted below
                    folded.append(layer)
                    continue
                handles.append(layer.register_forward_hook(
                    lambda m, args, out, part=part: out + part(m, args[0] if part.reads_input else out)))
            yield
        finally:
            for h in handles:
                h.remove()
            for layer in folded:
                del layer.forward

    # ------------------------------------------------------------------ sizes
    def num_parameters(self) -> int:
        """Trainable parameters of all parts."""
        return 0 if self.network is None else sum(p.numel() for p in self.network.parameters())

    def layer_sizes(self) -> List[Dict[str, Any]]:
        """Per part: the layer's name, the delta's rank (low-rank deltas) and its trainable parameters (where a
        parameter budget goes; ``ranks`` moves it)."""
        rows = []
        for p in self.points:
            part = self.network[_key(p["name"])]
            row = {"name": p["name"], "parameters": sum(t.numel() for t in part.parameters())}
            if isinstance(part, LowRankDelta):
                row["rank"] = part.b.weight.shape[1]
            rows.append(row)
        return rows

    def macs(self) -> int:
        """Multiply-accumulates of all parts per image (from the recorded layer shapes)."""
        total = 0
        for p in self.points:
            part = self.network[_key(p["name"])]
            for m in part.modules():
                if isinstance(m, nn.Linear) and p.get("groups", 1) == 1:
                    total += m.in_features * m.out_features * _positions(p)
                elif isinstance(m, nn.Conv2d):
                    total += m.weight.numel() * _positions(p)
            if isinstance(part, AffineDelta):  # a multiply and an add per element
                total += 2 * math.prod(p["shape"])
            if p.get("groups", 1) > 1:  # the built delta kernel costs as much as the layer
                total += p["out"] * p["in"] // p["groups"] * _kernel_area(p) * p["shape"][1] * p["shape"][2]
        return total

    # ------------------------------------------------------------------ state
    @property
    def is_fitted(self) -> bool:
        return self._is_fitted

    @property
    def training_info(self) -> Dict[str, Any]:
        return dict(self._training_info)

    def mark_fitted(self, training_info: Dict[str, Any]) -> None:
        """Record that training ran (called by the trainer), and how."""
        self._is_fitted, self._training_info = True, dict(training_info)

    def get_config(self) -> Dict[str, Any]:
        return {"input_shape": list(self.input_shape), "kind": self.kind, "layers": self.layers, "rank": self.rank,
                "ranks": dict(self.ranks) or None, "width": self.width, "norm_affine": self.norm_affine,
                "device_type": self.device_type}

    def save(self, path: str) -> None:
        """One safe checkpoint file (format-tagged; :mod:`art_idfr.checkpoint`)."""
        if self.network is None:
            raise ValueError("InnerRestorer is not built: nothing to save.")
        checkpoint.save(path, kind="InnerRestorer", config=self.get_config(), state_dict=self.network.state_dict(),
                        extra={"points": self.points, "target_digest": self.target_digest,
                               "is_fitted": self._is_fitted, "history": self.history,
                               "training": self._training_info})

    @classmethod
    def load(cls, path: str, device_type: Optional[str] = None) -> "InnerRestorer":
        """Load a restorer written by :meth:`save` (never executes code from the file)."""
        config, state_dict, extra = checkpoint.load_component(path, "InnerRestorer", device_type)
        inner = checkpoint.construct(cls, config, path, extra)
        try:
            inner._make_parts([dict(p) for p in extra["points"]])
        except (TypeError, ValueError, KeyError) as err:
            raise ValueError(f"{path}: stored InnerRestorer layers are invalid: {err!r}") from err
        checkpoint.load_state_dict(inner.network, state_dict, path, extra)
        inner.network.eval()
        inner.target_digest = extra.get("target_digest")
        inner._is_fitted = bool(extra.get("is_fitted", False))
        inner.history, inner._training_info = list(extra.get("history", [])), dict(extra.get("training") or {})
        return inner

    def _check_params(self) -> None:
        if len(self.input_shape) < 1 or any(s <= 0 for s in self.input_shape):
            raise ValueError(f"input_shape must be positive ints, e.g. (C, H, W); got {self.input_shape}.")
        if self.kind not in INNER_KINDS:
            raise ValueError(f"kind must be one of {INNER_KINDS}, got {self.kind!r}.")
        if self.rank < 1 or not self.width > 0:
            raise ValueError(f"rank must be >= 1 and width > 0, got rank={self.rank}, width={self.width}.")
        if self.ranks and self.kind != "lora":
            raise ValueError(f"ranks sets the rank of low-rank deltas; kind={self.kind!r} has none (use width).")
        if self.layers is not None and not self.layers:
            raise ValueError("layers must name at least one module, or be None for the default places.")
        check_device_type(self.device_type)


def check_ranks(ranks: Optional[Mapping[str, int]]) -> Dict[str, int]:
    """``ranks`` as ``{module name: positive int}`` (``ValueError`` for anything else)."""
    if ranks is None:
        return {}
    if not isinstance(ranks, Mapping):
        raise ValueError(f"ranks must map module names to ranks, e.g. {{'layer1.0.conv1': 8}}; got {ranks!r}.")
    bad = {k: v for k, v in ranks.items() if isinstance(v, bool) or not isinstance(v, int) or v < 1}
    if bad:
        raise ValueError(f"ranks must be positive ints; got {bad}.")
    return {str(k): int(v) for k, v in ranks.items()}


def _is_norm(module: nn.Module) -> bool:
    """A BatchNorm (1d/2d/3d, sync): where an affine delta goes."""
    return isinstance(module, nn.modules.batchnorm._BatchNorm)


def _key(name: str) -> str:
    """A module name as a ``ModuleDict`` key (no dots)."""
    return name.replace(".", "__")


def _kernel_area(p: Dict[str, Any]) -> int:
    return p["kernel"][0] * p["kernel"][1] if p["type"] == "Conv2d" else 1


def _layer_fields(p: Dict[str, Any]) -> Dict[str, Any]:
    """The recorded point without the probe's shapes (what :func:`_describe_layer` gives for the same layer)."""
    return {k: v for k, v in p.items() if k not in ("shape", "in_shape")}


def _positions(p: Dict[str, Any]) -> int:
    """Output positions per image of the layer a part acts at (each of the part's layers runs at all of them)."""
    shape = p["shape"]
    return shape[1] * shape[2] if len(shape) == 3 else 1
