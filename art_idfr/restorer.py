"""
The IDFR hidden lossy feature restorer (FR): a small fully connected network (paper Table 7) between the target's
encoder and its classification head: parameters, the restoring pass and persistence. It is plugged in with a forward
hook (no model surgery) by :func:`art_idfr.defended.attach_feature_restorer`; its training, Algorithm 2, lives in
:mod:`art_idfr.training.algorithm2` and :meth:`FeatureRestorer.fit` delegates there.

| Paper: "Adversarial Defense via Input Denoising and Feature Restoring" (IDFR), Sec. 3.3, Table 7, Algorithm 2.
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from art_idfr import checkpoint
from art_idfr._utils import check_device_type, check_finite, resolve_device
from art_idfr.denoiser import IDFRDenoiser
from art_idfr.training import algorithm2
from art_idfr.training.common import warn_unused_kwargs

if TYPE_CHECKING:  # pragma: no cover
    from art.attacks.attack import EvasionAttack
    from art.estimators.classification import PyTorchClassifier

logger = logging.getLogger(__name__)

#: Table 7 hidden widths for a d = 512 embedding (ResNet-18), as fractions of d: 256, 128, 32
TABLE7_FRACTIONS = (0.5, 0.25, 0.0625)

#: parameters that shape the network: changing one through :meth:`FeatureRestorer.set_params` rebuilds it (unfitted)
STRUCTURAL_PARAMS = ("embedding_dim", "widths", "skips", "batch_norm", "residual")


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


class FeatureRestorer:
    """
    IDFR hidden lossy feature restorer (FR), trained by Algorithm 2 on convex combinations (Eq. 4, 6) of
    penultimate embeddings of correctly and wrongly classified denoised samples of the same label.

    Plug it into a classifier with :func:`attach_feature_restorer`.

    Training lives apart: :meth:`fit` runs Algorithm 2 (:func:`art_idfr.training.algorithm2.fit_restorer`).

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
        self._training_info: Dict[str, Any] = {}
        if self.embedding_dim is not None:
            self.build(self.embedding_dim)

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

    @property
    def training_info(self) -> Dict[str, Any]:
        """How the FR was trained (``{"algorithm": "algorithm2", ...}``; stored in checkpoints); ``{}`` if unfitted."""
        return dict(self._training_info)

    def set_params(self, **kwargs) -> None:
        """Set constructor parameters; a structural one (:data:`STRUCTURAL_PARAMS`) rebuilds an unfitted network."""
        unknown = sorted(set(kwargs) - set(self.params) - {"device_type"})
        if unknown:
            raise ValueError(f"FeatureRestorer has no parameter(s) {unknown}; valid: {self.params + ['device_type']}.")
        old = {name: getattr(self, name) for name in STRUCTURAL_PARAMS}
        for name, value in kwargs.items():
            setattr(self, name, value)
        self.widths = None if self.widths is None else [int(w) for w in self.widths]
        self._check_params()
        self._device = resolve_device(self.device_type)
        if any(getattr(self, name) != value for name, value in old.items()):
            self.network, self._is_fitted, self._training_info = None, False, {}
            if self.embedding_dim is not None:
                self.build(self.embedding_dim)
        elif self.network is not None:
            self.network.to(self._device)

    def build(self, dim: int) -> None:
        """A fresh (identity-initialised, unfitted) network for embeddings of size ``dim``."""
        if self.seed is not None:
            torch.manual_seed(self.seed)
        self.embedding_dim = dim
        self.network = RestorerMLP(dim, self.widths, self.skips, self.batch_norm, self.residual)
        self.network.to(self._device).eval()

    def mark_fitted(self, training_info: Dict[str, Any]) -> None:
        """Called by the training algorithms when they finish: the FR is fitted, and how is recorded."""
        self._is_fitted = True
        self._training_info = dict(training_info)

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

    # ------------------------------------------------------------------ training (delegate)
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
        Train the FR by Algorithm 2 (:func:`art_idfr.training.algorithm2.fit_restorer`).

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
            each epoch; the weights of the epoch with the best mean of the two (``val_score``) are kept. A third
            element, a list of arrays of precomputed AEs of ``x_val``, is used as well.
        """
        warn_unused_kwargs(kwargs, "FeatureRestorer.fit")
        if denoiser is not None and not isinstance(denoiser, IDFRDenoiser):
            raise TypeError(f"denoiser must be an IDFRDenoiser, got {type(denoiser).__name__}.")
        self.layer = layer if layer is not None else self.layer
        algorithm2.fit_restorer(self, x, y, classifier, denoiser, attacks, nb_epochs, batch_size, x_adv, y_adv,
                                gaussian_copies, validation_data)

    # ------------------------------------------------------------------ persistence
    def save(self, path: str) -> None:
        """
        Write config + weights + format version to one file (loaded with ``weights_only=True``).
        Distributed (torchrun): only rank 0 writes, then all ranks meet at a barrier, so call it on every rank.
        """
        if self.network is None:
            raise ValueError("FeatureRestorer has no network yet (unfitted and no embedding_dim): nothing to save.")
        checkpoint.save(path, kind="FeatureRestorer", config=self.get_config(), state_dict=self.network.state_dict(),
                        extra={"is_fitted": self._is_fitted, "history": self.history, "training": self._training_info})

    @classmethod
    def load(cls, path: str, device_type: Optional[str] = None) -> "FeatureRestorer":
        """Load a restorer written by :meth:`save`. Never executes code from the file."""
        config, state_dict, extra = checkpoint.load_component(path, "FeatureRestorer", device_type)
        fr = checkpoint.construct(cls, config, path, extra)
        if fr.network is None:
            raise ValueError(f"{path}: FeatureRestorer checkpoint has no embedding_dim.")
        checkpoint.load_state_dict(fr.network, state_dict, path, extra)
        fr.network.to(fr._device).eval()
        fr._is_fitted = bool(extra.get("is_fitted", True))
        fr.history = list(extra.get("history", []))
        fr._training_info = dict(extra.get("training") or ({"algorithm": "algorithm2"} if fr._is_fitted else {}))
        return fr

    def _check_params(self) -> None:
        if self.embedding_dim is not None and self.embedding_dim <= 0:
            raise ValueError(f"embedding_dim must be positive, got {self.embedding_dim}.")
        if self.widths is not None and (len(self.widths) != 3 or min(self.widths) <= 0):
            raise ValueError(f"widths must be three positive ints (h1, h2, h3), got {self.widths}.")
        if self.learning_rate <= 0 or self.batch_size <= 0 or self.nb_epochs < 0:
            raise ValueError("learning_rate and batch_size must be positive and nb_epochs >= 0.")
        check_device_type(self.device_type)
        if self.layer is not None and not isinstance(self.layer, str):
            raise ValueError(f"layer must be None or a module name (str), got {self.layer!r}.")
