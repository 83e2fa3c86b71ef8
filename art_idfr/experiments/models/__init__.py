"""
Target models for the IDFR experiments, and a small, resumable training loop.

Every model built by :func:`make_model`

* takes images in ``[0, 1]`` pixel space and starts with a :class:`Normalize` module (mean / standard deviation
  live in the model, so ART attacks and preprocessing defences work on raw pixels), and
* ends with an :class:`torch.nn.Linear` classifier head whose *input* is the penultimate embedding. The feature
  restorer of the core library hooks "the input of the last ``nn.Linear``"; :func:`classifier_head` returns it.

Models are plain :class:`torch.nn.Module` subclasses (never a top-level :class:`torch.nn.Sequential`: ART's
``PyTorchClassifier`` would then call the children one by one and forward hooks on the whole model would not run).

ResNet-50 and Inception-v3 (torchvision's) start from a weights file of your own with ``make_model(...,
weights=path)`` (:func:`load_weights`: ``torch.load(weights_only=True)``, nothing downloaded).

Example::

    from art_idfr.experiments.models import make_model, train_model, accuracy

    model = make_model("small_cnn", num_classes=10, input_shape=(1, 28, 28), seed=0)
    history = train_model(model, x_train, y_train, epochs=5, checkpoint_dir="runs/mnist_cnn")

The package holds one module per job: :mod:`~art_idfr.experiments.models.architectures` (the networks and
:func:`classifier_head`), :mod:`~art_idfr.experiments.models.zoo` (:func:`make_model`),
:mod:`~art_idfr.experiments.models.weights` (:func:`load_weights`), :mod:`~art_idfr.experiments.models.predict`
(devices, logits, accuracy, batch-norm recalibration) and :mod:`~art_idfr.experiments.models.training`
(:func:`train_model` and its checkpoints). The public names are re-exported here, so
``from art_idfr.experiments.models import ...`` works as before the split; private helpers are imported from the
module that defines them.
"""
from art_idfr._names import MODEL_NAMES  # noqa: F401  (re-exported)
from art_idfr.experiments.models.architectures import (  # noqa: F401  (re-exported)
    IMAGENET_MEAN,
    IMAGENET_STD,
    CifarResNet,
    CifarVGG,
    ImageClassifier,
    Normalize,
    SmallCNN,
    classifier_head,
)
from art_idfr.experiments.models.predict import accuracy, predict_logits, recalibrate_batchnorm, torch_device
from art_idfr.experiments.models.training import latest_checkpoint, train_model
from art_idfr.experiments.models.weights import load_weights
from art_idfr.experiments.models.zoo import make_model, weights_normalization

__all__ = [
    "MODEL_NAMES",
    "Normalize",
    "ImageClassifier",
    "SmallCNN",
    "make_model",
    "classifier_head",
    "train_model",
    "accuracy",
    "predict_logits",
    "torch_device",
    "latest_checkpoint",
    "recalibrate_batchnorm",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "load_weights",
    "weights_normalization",
]
