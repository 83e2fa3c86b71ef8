"""
The IDFR hidden lossy feature restorer (FR): a small fully connected network (paper Table 7) between the target's
encoder and its classification head, trained by Algorithm 2 / Eq. 6 on convex combinations of embeddings, and
plugged in with a forward hook (no model surgery) by :func:`attach_feature_restorer`.

| Paper: "Adversarial Defense via Input Denoising and Feature Restoring" (IDFR), Sec. 3.3, Table 7, Algorithm 2.
"""
from __future__ import annotations

import contextlib
import logging
import math
from typing import TYPE_CHECKING, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from art_idfr import checkpoint
from art_idfr._utils import (
    batches,
    check_finite,
    check_image_batch,
    check_pytorch_classifier,
    check_range,
    craft,
    device_of,
    frozen,
    resolve_device,
    target_logits,
    to_one_hot_indices,
    warn_unused_kwargs,
)

if TYPE_CHECKING:  # pragma: no cover
    from art.attacks.attack import EvasionAttack
    from art.estimators.classification import PyTorchClassifier

    from art_idfr.denoiser import IDFRDenoiser

logger = logging.getLogger(__name__)

#: Table 7 hidden widths for a d = 512 embedding (ResNet-18), as fractions of d: 256, 128, 32
TABLE7_FRACTIONS = (0.5, 0.25, 0.0625)


# ---------------------------------------------------------------------------------------------------- hook point
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
        Inception ``fc``, the last Linear of an ``nn.Sequential``); otherwise the name (as in
        ``model.named_modules()``) of the module whose *output* is the embedding.
    """
    modules = dict(model.named_modules())
    if layer is None:
        linears = [name for name, m in modules.items() if isinstance(m, nn.Linear)]
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


# ---------------------------------------------------------------------------------------------------- network
class RestorerMLP(nn.Module):
    """
    Table 7: d→h1→h2→h3→h2→h1→d, fully connected, ReLU after each layer (h1, h2, h3 = d/2, d/4, d/16; 256, 128, 32
    for d = 512).

    :param dim: Embedding size d.
    :param widths: (h1, h2, h3); default Table 7 scaled to ``dim``.
    :param skips: Additive skips between the symmetric layers (h2↔h2, h1↔h1), as in the authors' code.
    :param batch_norm: BatchNorm after each hidden layer, as in the authors' code.
    :param residual: Output ``h + g(h)`` with the last layer initialised to zero, so an untrained FR is the
        identity. ``False`` gives Table 7's ``ReLU(g(h))``.
    """

    def __init__(
        self,
        dim: int,
        widths: Optional[Sequence[int]] = None,
        skips: bool = True,
        batch_norm: bool = True,
        residual: bool = True,
    ) -> None:
        super().__init__()
        h1, h2, h3 = widths if widths is not None else (max(8, int(round(dim * f))) for f in TABLE7_FRACTIONS)
        self.skips, self.residual = skips, residual

        def block(i: int, o: int) -> nn.Sequential:
            layers: List[nn.Module] = [nn.Linear(i, o)]
            if batch_norm:
                layers.append(nn.BatchNorm1d(o))
            layers.append(nn.ReLU(inplace=False))
            return nn.Sequential(*layers)

        self.l1, self.l2, self.l3 = block(dim, h1), block(h1, h2), block(h2, h3)
        self.l4, self.l5 = block(h3, h2), block(h2, h1)
        self.l6 = nn.Linear(h1, dim)
        if residual:
            nn.init.zeros_(self.l6.weight)
            nn.init.zeros_(self.l6.bias)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        a1 = self.l1(h)
        a2 = self.l2(a1)
        a4 = self.l4(self.l3(a2))
        a5 = self.l5(a4 + a2 if self.skips else a4)
        out = self.l6(a5 + a1 if self.skips else a5)
        return h + out if self.residual else F.relu(out)


# ---------------------------------------------------------------------------------------------------- restorer
class FeatureRestorer:
    """
    IDFR hidden lossy feature restorer (FR), trained by Algorithm 2 on convex combinations (Eq. 4, 6) of
    penultimate embeddings of correctly and wrongly classified denoised samples of the same label.

    Plug it into a classifier with :func:`attach_feature_restorer`.

    | Paper: IDFR, Sec. 3.3 and Algorithm 2.

    :param embedding_dim: Size d of the (flattened) embedding; ``None`` infers it in :meth:`fit`.
    :param widths: Hidden widths (h1, h2, h3); default Table 7 scaled to d.
    :param skips: Skip connections between symmetric layers (authors' code).
    :param batch_norm: BatchNorm in hidden layers (authors' code).
    :param residual: Identity-initialised residual output (default) instead of Table 7's final ReLU.
    :param layer: Default hook point: ``None`` = input of the last ``nn.Linear``; a module name = its output.
    :param learning_rate: Adam learning rate (paper: 0.01).
    :param nb_epochs: Default epochs for :meth:`fit` (paper: 80).
    :param batch_size: Mini-batch size.
    :param device_type: ``"gpu"`` (CUDA when available, else CPU) or ``"cpu"``.
    :param verbose: Show progress bars.
    :param seed: Seed for initialisation, pairing and α draws.
    """

    params = [
        "embedding_dim",
        "widths",
        "skips",
        "batch_norm",
        "residual",
        "layer",
        "learning_rate",
        "nb_epochs",
        "batch_size",
        "verbose",
        "seed",
    ]

    def __init__(
        self,
        embedding_dim: Optional[int] = None,
        widths: Optional[Sequence[int]] = None,
        skips: bool = True,
        batch_norm: bool = True,
        residual: bool = True,
        layer: Optional[str] = None,
        learning_rate: float = 1e-3,
        nb_epochs: int = 20,
        batch_size: int = 256,
        device_type: str = "gpu",
        verbose: bool = False,
        seed: Optional[int] = 0,
    ) -> None:
        self.embedding_dim = None if embedding_dim is None else int(embedding_dim)
        self.widths = None if widths is None else [int(w) for w in widths]
        self.skips = bool(skips)
        self.batch_norm = bool(batch_norm)
        self.residual = bool(residual)
        self.layer = layer
        self.learning_rate = float(learning_rate)
        self.nb_epochs = int(nb_epochs)
        self.batch_size = int(batch_size)
        self.device_type = device_type
        self.verbose = bool(verbose)
        self.seed = seed
        self._check_params()
        self._device = resolve_device(device_type)
        self.network: Optional[RestorerMLP] = None
        self._is_fitted = False
        self.history: List[Dict[str, float]] = []
        if self.embedding_dim is not None:
            self._build(self.embedding_dim)

    @property
    def is_fitted(self) -> bool:
        """``True`` once :meth:`fit` or :meth:`load` has given the FR trained weights."""
        return self._is_fitted

    @property
    def device(self) -> torch.device:
        """Device of the FR network."""
        return self._device

    def get_config(self) -> Dict:
        """Constructor arguments (JSON-serialisable), as stored in checkpoints."""
        return {name: getattr(self, name) for name in self.params} | {"device_type": self.device_type}

    def _build(self, dim: int) -> None:
        if self.seed is not None:
            torch.manual_seed(self.seed)
        self.embedding_dim = dim
        self.network = RestorerMLP(dim, self.widths, self.skips, self.batch_norm, self.residual)
        self.network.to(self._device).eval()

    def check_embedding(self, h: torch.Tensor) -> None:
        """Raise ``ValueError`` if ``h`` (N, d) does not match the FR's embedding size, or the FR is unfitted."""
        if not self._is_fitted or self.network is None:
            raise ValueError("FeatureRestorer is not fitted: call fit(...) or FeatureRestorer.load(...) first.")
        if h.ndim != 2 or h.shape[1] != self.embedding_dim:
            raise ValueError(
                f"embedding size mismatch: the model's embedding has size {h.shape[1] if h.ndim == 2 else tuple(h.shape)}"
                f" but the FeatureRestorer was built for embedding_dim={self.embedding_dim}."
            )
        check_finite(h, "embedding")

    def restore(self, h: torch.Tensor) -> torch.Tensor:
        """``FR(h)`` for a torch batch of embeddings (N, d); differentiable; returns on ``h``'s device."""
        self.check_embedding(h)
        self.network.eval()
        return self.network(h.to(self._device)).to(h.device)

    def __call__(self, h: np.ndarray) -> np.ndarray:
        """``FR(h)`` for a NumPy batch of embeddings (N, d)."""
        with torch.no_grad():
            return self.restore(torch.as_tensor(np.asarray(h, dtype=np.float32))).cpu().numpy()

    # ------------------------------------------------------------------ training (Algorithm 2)
    def fit(
        self,
        x: np.ndarray,
        y: np.ndarray,
        classifier: Optional["PyTorchClassifier"] = None,
        denoiser: Optional["IDFRDenoiser"] = None,
        attacks: Optional[Sequence["EvasionAttack"]] = None,
        layer: Optional[str] = None,
        nb_epochs: Optional[int] = None,
        batch_size: Optional[int] = None,
        x_adv: Optional[np.ndarray] = None,
        y_adv: Optional[np.ndarray] = None,
        gaussian_copies: bool = True,
        validation_data: Optional[Tuple[np.ndarray, np.ndarray]] = None,
        **kwargs,
    ) -> None:
        """
        Train the FR by Algorithm 2.

        1. Embeddings ``h = f_enc(ID(·))`` of the clean images, their Gaussian-enhanced copies (the denoiser's
           ``gaussian_enhance``) and the AEs crafted by ``attacks`` (plus ``x_adv``).
        2. Split them into x̂ (classified correctly by the head f_cls) and x̂' (misclassified), Def. 1.
        3. Each epoch, pair every embedding h_x̃ with a random correctly classified h_x of the same label, draw
           α ~ U(0, 1) per pair (Alg. 2 line 3) and minimise Eq. 6: CE(f_cls(FR(α·h_x + (1−α)·h_x̃)), y).

        :param x: Clean training images (inside the classifier's ``clip_values``).
        :param y: Labels (indices or one-hot).
        :param classifier: The target ``PyTorchClassifier`` (frozen). If it already carries an ``IDFRDenoiser``
            and ``denoiser`` is ``None``, that one is used.
        :param denoiser: The fitted ID to apply before the encoder (instances inside the classifier are then
            bypassed, so the ID is applied exactly once).
        :param attacks: ART evasion attacks crafting the AEs (typically on the undefended target).
        :param layer: Hook point (default: the constructor's ``layer``).
        :param nb_epochs: Epochs (default: the constructor's ``nb_epochs``).
        :param batch_size: Batch size (default: the constructor's ``batch_size``).
        :param x_adv: Precomputed AEs to add; ``y_adv`` their labels (default: ``y`` tiled).
        :param gaussian_copies: Also embed the denoiser's Gaussian-enhanced copies of ``x`` (Alg. 2 input x_e).
        :param validation_data: Optional ``(x_val, y_val)`` (never the test split); clean accuracy of the full
            chain (``val_acc``) and, with ``attacks``, accuracy on their AEs of ``x_val`` (``val_adv_acc``) are logged
            each epoch; the weights of the epoch with the best mean of the two (``val_score``) are kept. A third element,
            a list of arrays of precomputed AEs of ``x_val``, is used as well.
        """
        warn_unused_kwargs(kwargs, "FeatureRestorer.fit")
        from art_idfr.denoiser import IDFRDenoiser

        if classifier is None:
            raise ValueError("FeatureRestorer.fit needs the target: fit(x, y, classifier=..., denoiser=...).")
        check_pytorch_classifier(classifier)
        if denoiser is not None and not isinstance(denoiser, IDFRDenoiser):
            raise TypeError(f"denoiser must be an IDFRDenoiser, got {type(denoiser).__name__}.")
        if denoiser is not None and not denoiser.is_fitted:
            logger.warning("FeatureRestorer.fit: the denoiser is not fitted; embeddings come from an untrained ID.")
        self.layer = layer if layer is not None else self.layer
        nb_epochs = self.nb_epochs if nb_epochs is None else int(nb_epochs)
        batch_size = self.batch_size if batch_size is None else int(batch_size)
        nb_classes = classifier.nb_classes
        y_idx = to_one_hot_indices(y, nb_classes)
        if len(y_idx) != len(x):
            raise ValueError(f"x has {len(x)} samples but y has {len(y_idx)}.")

        def check(images, name):  # layout, value range and finiteness, as the classifier declares them
            check_image_batch(images, classifier.input_shape, classifier.channels_first, classifier.clip_values,
                              name=f"FeatureRestorer.fit {name}")

        check(x, "x")
        if x_adv is not None:
            check(x_adv, "x_adv")
        if validation_data is not None:
            check(validation_data[0], "validation x")
            for i, xv in enumerate(validation_data[2] if len(validation_data) > 2 else []):
                check(xv, f"validation AEs [{i}]")

        # ---- inputs whose embeddings the FR learns from: clean, Gaussian-enhanced, adversarial
        xs, ys = [np.asarray(x, dtype=np.float32)], [y_idx]
        if gaussian_copies and denoiser is not None and denoiser.gaussian_rounds > 0:
            gen = torch.Generator().manual_seed(self.seed or 0)
            xs.append(denoiser.gaussian_enhance(torch.as_tensor(xs[0]), gen).numpy())
            ys.append(np.tile(y_idx, denoiser.gaussian_rounds))
        onehot = np.eye(nb_classes, dtype=np.float32)[y_idx]
        for adv in craft(attacks or [], xs[0], onehot, "crafting FR training AEs", self.verbose):
            xs.append(adv)
            ys.append(y_idx)
        if x_adv is not None:
            xs.append(np.asarray(x_adv, dtype=np.float32))
            ys.append(to_one_hot_indices(y_adv, nb_classes) if y_adv is not None else
                      np.tile(y_idx, math.ceil(len(x_adv) / len(y_idx)))[: len(x_adv)])
        x_all, y_all = np.concatenate(xs), np.concatenate(ys)

        model = classifier.model
        point = find_embedding_layer(model, self.layer)
        with frozen(model):
            h_all, correct = self._embed(classifier, denoiser, point, x_all, y_all, batch_size)
            if self.network is None or self.embedding_dim != h_all.shape[1]:
                self._build(h_all.shape[1])
            head = self._head(classifier, denoiser, point, x_all[:batch_size])
            val = []  # embeddings of the clean validation images, then of their AEs from each attack
            if validation_data is not None:
                x_val = np.asarray(validation_data[0], dtype=np.float32)
                y_val = to_one_hot_indices(validation_data[1], nb_classes)
                x_sets = [x_val, *(validation_data[2] if len(validation_data) > 2 else [])]  # + precomputed AEs
                x_sets += craft(attacks or [], x_val, np.eye(nb_classes, dtype=np.float32)[y_val],
                                "crafting FR validation AEs", self.verbose)
                for xv in x_sets:
                    val.append((self._embed(classifier, denoiser, point, xv, y_val, batch_size)[0], y_val))
            self._train(h_all, torch.as_tensor(y_all), correct, head, nb_epochs, batch_size, val)
        self._is_fitted = True

    def _embed(self, classifier, denoiser, point, x, y, batch_size) -> Tuple[torch.Tensor, torch.Tensor]:
        """h = f_enc(ID(x)) for all x, and whether the head classifies each correctly (Def. 1: x̂ vs x̂')."""
        from art_idfr.denoiser import IDFRDenoiser

        skip = (IDFRDenoiser,) if denoiser is not None else ()
        hs, correct = [], []
        with torch.no_grad():
            for idx in tqdm(
                list(batches(len(x), batch_size)), desc="FR embeddings", disable=not self.verbose, leave=False
            ):
                xb = torch.as_tensor(x[idx.numpy()], device=classifier.device)
                if denoiser is not None:
                    xb = denoiser._apply(xb)  # fit() warned already if the ID is unfitted
                captured: List[torch.Tensor] = []
                with point.intercept(lambda h: captured.append(h)):
                    logits = target_logits(classifier, xb, skip=skip)
                hs.append(captured[-1].float().cpu())
                correct.append(logits.argmax(1).cpu() == torch.as_tensor(y[idx.numpy()]))
        return torch.cat(hs), torch.cat(correct)

    def _head(self, classifier, denoiser, point, x_probe) -> Callable[[torch.Tensor], torch.Tensor]:
        """
        f_cls as a function of the embedding. Fast path: when the hooked module is the last ``nn.Linear`` and its
        output is the model's output, f_cls is that module. Otherwise replay: run the model on probe inputs and
        replace the embedding by the hook (exact when everything after the hook depends only on the embedding).
        """
        from art_idfr.denoiser import IDFRDenoiser

        skip = (IDFRDenoiser,) if denoiser is not None else ()
        xb = torch.as_tensor(x_probe, device=classifier.device)
        if point.mode == "input":
            outs: List[torch.Tensor] = []
            handle = point.module.register_forward_hook(lambda m, a, o: outs.append(o))
            try:
                with torch.no_grad():
                    logits = target_logits(classifier, xb, skip=skip)
            finally:
                handle.remove()
            if outs and outs[-1].shape == logits.shape and torch.allclose(outs[-1], logits, atol=1e-5):
                module = point.module
                return lambda h: module(h.to(device_of(module)))
        logger.info("FR head: %s is not the model's last operation; replaying the model through the hook", point)

        def replay(h: torch.Tensor) -> torch.Tensor:
            reps = math.ceil(len(h) / len(xb))
            x_in = xb.repeat(reps, *([1] * (xb.ndim - 1)))[: len(h)]
            with point.intercept(lambda _: h):
                return target_logits(classifier, x_in, skip=skip)

        return replay

    def _train(self, h_all, y_all, correct, head, nb_epochs, batch_size, val) -> None:
        gen = torch.Generator().manual_seed(self.seed if self.seed is not None else 0)
        # for each label: indices of correctly classified embeddings (x̂), falling back to all of that label
        partners = {}
        for label in y_all.unique().tolist():
            same = (y_all == label).nonzero().flatten()
            good = same[correct[same]]
            partners[label] = good if len(good) else same
        optimizer = torch.optim.Adam(self.network.parameters(), lr=self.learning_rate)
        steps = max(1, nb_epochs * math.ceil(len(h_all) / batch_size))
        scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=self.learning_rate, total_steps=steps)
        best_state, best_acc = None, -1.0
        for epoch in range(nb_epochs):
            # Algorithm 2 line 2: a same-label partner h_x ∈ x̂ for every embedding h_x̃
            partner = torch.empty(len(h_all), dtype=torch.long)
            for label, pool in partners.items():
                rows = (y_all == label).nonzero().flatten()
                partner[rows] = pool[torch.randint(len(pool), (len(rows),), generator=gen)]
            alpha = torch.rand(len(h_all), 1, generator=gen)  # Alg. 2 line 3: α ~ U(0, 1) per pair
            self.network.train()
            loss_sum, hits, total = 0.0, 0, 0
            for idx in tqdm(
                list(batches(len(h_all), batch_size, shuffle=True, generator=gen)),
                desc=f"FR epoch {epoch + 1}",
                disable=not self.verbose,
                leave=False,
            ):
                if len(idx) < 2 and self.batch_norm:
                    continue  # BatchNorm cannot train on a single sample
                a = alpha[idx]
                mix = a * h_all[partner[idx]] + (1 - a) * h_all[idx]  # Alg. 2 lines 4-6, Eq. 4
                yb = y_all[idx].to(self._device)
                logits = head(self.network(mix.to(self._device)))
                loss = F.cross_entropy(logits, yb.to(logits.device))  # Eq. 6
                if not torch.isfinite(loss):
                    raise FloatingPointError(
                        f"FR training loss became {loss.item()} in epoch {epoch + 1}: lower learning_rate, or check "
                        "the embeddings (a target with NaN/inf activations, or inputs outside its training range).")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
                loss_sum += loss.item() * len(idx)
                hits += (logits.argmax(1).cpu() == y_all[idx]).sum().item()
                total += len(idx)
            self.network.eval()
            stats = {"epoch": epoch + 1, "loss": loss_sum / max(total, 1), "train_mix_acc": hits / max(total, 1)}
            if val:
                accs = []
                with torch.no_grad():
                    for h_val, y_val in val:
                        pred = torch.cat([head(self.network(h_val[i].to(self._device))).argmax(1).cpu()
                                          for i in batches(len(h_val), batch_size)])
                        accs.append(float((pred.numpy() == y_val).mean()))
                # best epoch: mean of clean and adversarial validation accuracy (clean only without attacks)
                stats["val_acc"] = stats["val_score"] = accs[0]
                if len(accs) > 1:
                    stats["val_adv_acc"] = float(np.mean(accs[1:]))
                    stats["val_score"] = (accs[0] + stats["val_adv_acc"]) / 2
                if stats["val_score"] > best_acc:
                    best_acc = stats["val_score"]
                    best_state = {k: v.detach().clone() for k, v in self.network.state_dict().items()}
            self.history.append(stats)
            logger.info("FR epoch %d: %s", epoch + 1, stats)
        if best_state is not None:
            self.network.load_state_dict(best_state)
        self.network.eval()

    # ------------------------------------------------------------------ persistence
    def save(self, path: str) -> None:
        """Write config + weights + format version to one file (loaded with ``weights_only=True``)."""
        if self.network is None:
            raise ValueError("FeatureRestorer has no network yet (unfitted and no embedding_dim): nothing to save.")
        checkpoint.save(path, kind="FeatureRestorer", config=self.get_config(), state_dict=self.network.state_dict(),
                        extra={"is_fitted": self._is_fitted, "history": self.history})

    @classmethod
    def load(cls, path: str, device_type: Optional[str] = None) -> "FeatureRestorer":
        """Load a restorer written by :meth:`save`. Never executes code from the file."""
        if device_type is not None and device_type not in ("gpu", "cpu"):
            raise ValueError(f"device_type must be 'gpu' or 'cpu', got {device_type!r}.")
        config, state_dict, extra = checkpoint.load(path, kind="FeatureRestorer")
        if device_type is not None:
            config["device_type"] = device_type
        try:
            fr = cls(**config)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{path}: stored FeatureRestorer config is invalid: {err}") from err
        if fr.network is None:
            raise ValueError(f"{path}: FeatureRestorer checkpoint has no embedding_dim.")
        checkpoint.load_state_dict(fr.network, state_dict, path)
        fr.network.to(fr._device).eval()
        fr._is_fitted = bool(extra.get("is_fitted", True))
        fr.history = list(extra.get("history", []))
        return fr

    def _check_params(self) -> None:
        if self.embedding_dim is not None and self.embedding_dim <= 0:
            raise ValueError(f"embedding_dim must be positive, got {self.embedding_dim}.")
        if self.widths is not None and (len(self.widths) != 3 or min(self.widths) <= 0):
            raise ValueError(f"widths must be three positive ints (h1, h2, h3), got {self.widths}.")
        if self.learning_rate <= 0 or self.batch_size <= 0 or self.nb_epochs < 0:
            raise ValueError("learning_rate and batch_size must be positive and nb_epochs >= 0.")
        if self.device_type not in ("gpu", "cpu"):
            raise ValueError(f"device_type must be 'gpu' or 'cpu', got {self.device_type!r}.")
        if self.layer is not None and not isinstance(self.layer, str):
            raise ValueError(f"layer must be None or a module name (str), got {self.layer!r}.")


# ---------------------------------------------------------------------------------------------------- plugging in
class RestoredModel(nn.Module):
    """
    ``model`` with the FR applied to its embedding by a forward hook that exists only during this module's forward
    pass, so the wrapped model object keeps behaving unchanged everywhere else.
    """

    def __init__(
        self,
        model: nn.Module,
        restorer: FeatureRestorer,
        layer: Optional[str] = None,
        input_check: Optional[Callable[[torch.Tensor], None]] = None,
    ) -> None:
        super().__init__()
        self.model = model
        self.restorer_network = restorer.network  # registered so .to()/.train()/.eval() reach the FR
        self._restorer = restorer
        self._point = find_embedding_layer(model, layer)
        self._input_check = input_check

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._input_check is not None:
            self._input_check(x)
        restorer = self._restorer

        def restore(h: torch.Tensor) -> torch.Tensor:
            restorer.check_embedding(h)
            return self.restorer_network(h.to(device_of(self.restorer_network))).to(h.device)

        with self._point.intercept(restore):
            return self.model(x)


def _model_input_check(classifier: "PyTorchClassifier") -> Callable[[torch.Tensor], None]:
    """
    A check of what reaches the wrapped model, so that a classifier defended by the FR alone rejects bad input as
    the ID does. When the classifier's only preprocessing is ART's mean/std standardisation (which the check undoes):
    the per-sample shape (e.g. NHWC given to a channels-first classifier), NaN/inf and values outside
    ``clip_values`` (e.g. 0-255 pixels given to a (0, 1) model). Behind other preprocessing (an ``IDFRDenoiser``,
    which checks its own input; JPEG; a resize) only NaN/inf, since those may legitimately change shape or range.
    """
    from art.preprocessing.standardisation_mean_std.numpy import StandardisationMeanStd
    from art.preprocessing.standardisation_mean_std.pytorch import StandardisationMeanStdPyTorch
    from art.preprocessing.standardisation_mean_std.utils import broadcastable_mean_std

    name = "input of the FR-defended classifier"
    ops = list(classifier.preprocessing_operations or [])
    if not all(isinstance(op, (StandardisationMeanStd, StandardisationMeanStdPyTorch)) for op in ops):
        return lambda x: check_finite(x.detach(), name)
    # x = (pixels - mean) / std after each standardisation, in order: undo them in reverse
    scales = [(np.asarray(op.mean, dtype=np.float32), np.asarray(op.std, dtype=np.float32)) for op in ops]
    input_shape, channels_first, clip_values = tuple(classifier.input_shape), classifier.channels_first, \
        classifier.clip_values

    def check(x: torch.Tensor) -> None:
        check_image_batch(x.detach(), input_shape, channels_first, None, name=name)  # layout, NaN/inf
        if clip_values is not None:
            raw = x.detach()
            for mean, std in reversed(scales):  # broadcast as ART does
                mean, std = broadcastable_mean_std(raw, mean, std)
                raw = raw * torch.as_tensor(std, device=raw.device) + torch.as_tensor(mean, device=raw.device)
            check_range(raw, clip_values, name=name)

    return check


def attach_feature_restorer(
    classifier: "PyTorchClassifier", restorer: FeatureRestorer, layer: Optional[str] = None
) -> "PyTorchClassifier":
    """
    Return a new ART ``PyTorchClassifier`` whose penultimate embedding passes through the FR
    (``x → defences → f_enc → FR → f_cls``), keeping the input classifier's preprocessing defences, clip values,
    preprocessing, loss, optimizer, channel layout and device. The classifier passed in is left unchanged.

    :param classifier: An ART ``PyTorchClassifier`` (typically already defended by an ``IDFRDenoiser``).
    :param restorer: A fitted :class:`FeatureRestorer`.
    :param layer: Hook point; default: the restorer's ``layer`` (``None`` = input of the last ``nn.Linear``).
    :raises TypeError: ``classifier`` is not a ``PyTorchClassifier``.
    :raises ValueError: the restorer is unfitted, or its embedding size does not match the model's.
    """
    from art.estimators.classification import PyTorchClassifier

    check_pytorch_classifier(classifier)
    if not isinstance(restorer, FeatureRestorer):
        raise TypeError(f"restorer must be a FeatureRestorer, got {type(restorer).__name__}.")
    if not restorer.is_fitted:
        raise ValueError("FeatureRestorer is not fitted: call fit(...) or FeatureRestorer.load(...) first.")
    layer = layer if layer is not None else restorer.layer
    model = classifier.model
    restorer.network.to(device_of(model) if any(True for _ in model.parameters()) else classifier.device)
    wrapped = RestoredModel(model, restorer, layer, input_check=_model_input_check(classifier))

    # fail now, not at the first attack: probe the embedding size with two inputs at the lower clip value, through
    # ART's own predict (so NumPy preprocessing defences such as JpegCompression run as they will later)
    point = wrapped._point
    probe_value = 0.0 if classifier.clip_values is None else float(np.min(classifier.clip_values[0]))
    probe = np.full((2, *classifier.input_shape), probe_value, dtype=np.float32)
    sizes: List[int] = []
    with frozen(model), torch.no_grad(), point.intercept(lambda h: sizes.append(h.shape[1])):
        classifier.predict(probe, batch_size=2)
    if sizes and sizes[-1] != restorer.embedding_dim:
        raise ValueError(
            f"embedding size mismatch: the model's embedding at {point} has size {sizes[-1]} but the "
            f"FeatureRestorer was built for embedding_dim={restorer.embedding_dim}."
        )
    return PyTorchClassifier(
        model=wrapped,
        loss=classifier._loss,
        input_shape=classifier.input_shape,
        nb_classes=classifier.nb_classes,
        optimizer=classifier.optimizer,
        channels_first=classifier.channels_first,
        clip_values=classifier.clip_values,
        preprocessing_defences=classifier.preprocessing_defences,
        postprocessing_defences=classifier.postprocessing_defences,
        preprocessing=classifier.preprocessing,
        device_type=classifier.device_type,
    )
