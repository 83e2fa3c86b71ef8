"""
Where the IDFR components meet the target: a differentiable forward pass through an ART ``PyTorchClassifier``
(:func:`target_logits`), and the hook point of the penultimate embedding (:class:`EmbeddingLayer`,
:func:`find_embedding_layer`, :func:`embedding_of`) that the FR reads and replaces.
"""
from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Callable, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

if TYPE_CHECKING:  # pragma: no cover
    from art.estimators.classification import PyTorchClassifier


def target_logits(classifier: "PyTorchClassifier", x: torch.Tensor, skip: Sequence[type] = ()) -> torch.Tensor:
    """
    Differentiable logits of an ART ``PyTorchClassifier`` for a torch batch ``x`` in the classifier's input space.

    Applies the classifier's PyTorch preprocessing operations (defences and standardisation) except instances of
    ``skip`` — so the IDFR components can train against the *bare* target even when the classifier already carries
    them — then runs the model. Non-PyTorch defences cannot be differentiated through and raise ``TypeError``.
    """
    from art.defences.preprocessor.preprocessor import PreprocessorPyTorch
    from art.preprocessing.standardisation_mean_std.numpy import StandardisationMeanStd

    for op in classifier.preprocessing_operations:
        if skip and isinstance(op, tuple(skip)):
            continue
        if isinstance(op, StandardisationMeanStd):  # numpy standardisation: replicate it in torch
            mean = torch.as_tensor(np.asarray(op.mean), dtype=x.dtype, device=x.device)
            std = torch.as_tensor(np.asarray(op.std), dtype=x.dtype, device=x.device)
            x = (x - mean) / std
        elif isinstance(op, PreprocessorPyTorch):
            if op.apply_predict:
                x, _ = op.forward(x)
        else:
            raise TypeError(
                f"cannot back-propagate through the classifier's {type(op).__name__} (not a PreprocessorPyTorch); "
                "give IDFR the undefended classifier."
            )
    out = classifier.model(x)
    if isinstance(out, (list, tuple)):
        out = out[-1]
    return out


class EmbeddingLayer:
    """
    Where the FR sits in a model: ``mode="input"`` means the input of ``module`` (default: the last ``nn.Linear``,
    i.e. the penultimate embedding), ``mode="output"`` the output of the module named by the user.
    """

    def __init__(self, name: str, module: nn.Module, mode: str) -> None:
        self.name, self.module, self.mode = name, module, mode

    def __repr__(self) -> str:
        return f"EmbeddingLayer({self.mode} of {self.name!r}: {type(self.module).__name__})"

    @contextlib.contextmanager
    def intercept(self, fn: Callable[[torch.Tensor], Optional[torch.Tensor]]) -> Iterator[None]:
        """
        While the block runs, every forward pass hands the embedding (flattened to (N, d)) to ``fn``; when ``fn``
        returns a tensor it replaces the embedding (reshaped back), when it returns ``None`` nothing changes.
        """

        def apply(h: torch.Tensor) -> torch.Tensor:
            out = fn(h.flatten(1))
            return h if out is None else out.reshape(h.shape)

        if self.mode == "input":
            handle = self.module.register_forward_pre_hook(lambda m, args: (apply(args[0]), *args[1:]))
        else:
            handle = self.module.register_forward_hook(lambda m, args, output: apply(output))
        try:
            yield
        finally:
            handle.remove()


def find_embedding_layer(model: nn.Module, layer: Optional[str] = None) -> EmbeddingLayer:
    """
    Locate the penultimate embedding of ``model``.

    :param model: The target network (``classifier.model`` of an ART ``PyTorchClassifier``).
    :param layer: ``None`` → the input of the last ``nn.Linear`` (torchvision ResNet ``fc``, VGG ``classifier.6``,
        Inception ``fc``, the last Linear of an ``nn.Sequential``), not counting those inside art-idfr's own
        restorers (modules with ``is_restorer_part``) when the model is already wrapped with them; otherwise the name (as in
        ``model.named_modules()``) of the module whose *output* is the embedding.
    """
    modules = dict(model.named_modules())
    if layer is None:
        parts = [name for name, m in modules.items() if getattr(m, "is_restorer_part", False)]
        linears = [name for name, m in modules.items() if isinstance(m, nn.Linear)
                   and not any(name.startswith(p + ".") for p in parts)]  # not inside a restorer of ours
        if not linears:
            raise ValueError(
                "the model has no nn.Linear layer to hook; pass layer=<module name> (one of "
                f"{[n for n in modules if n][:20]}...)"
            )
        return EmbeddingLayer(linears[-1], modules[linears[-1]], "input")
    if layer not in modules or layer == "":
        raise ValueError(f"no module named {layer!r} in the model; valid names: {[n for n in modules if n]}")
    return EmbeddingLayer(layer, modules[layer], "output")


def embedding_of(
    classifier: "PyTorchClassifier", x: torch.Tensor, layer: Optional[str] = None, skip: Sequence[type] = ()
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Differentiable (embedding h = f_enc(x), logits) of the classifier for a torch batch ``x``."""
    point = find_embedding_layer(classifier.model, layer)
    captured: List[torch.Tensor] = []
    with point.intercept(lambda h: captured.append(h)):
        logits = target_logits(classifier, x, skip=skip)
    if not captured:
        raise RuntimeError(f"{point} was not executed by the model's forward pass.")
    return captured[-1], logits
