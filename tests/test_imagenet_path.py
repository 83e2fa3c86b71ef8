"""
The ImageNet-size path on a generated ImageFolder (train/ + val/, 2 WordNet-ID classes, JPEGs of about 256x300 px):
loading at 224 and 299, ResNet-50 and Inception-v3 from torchvision state_dict files (``weights=`` / ``--weights``),
the FR's hook on torchvision's ``fc``, Algorithms 1 and 2 at 224 with the defended predict, the command line (train-target
-> fit -> evaluate, at 32 px to stay within the CPU budget) and the benchmark script's argument check.
"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from art_idfr import FeatureRestorer, IDFRDenoiser, defend
from art_idfr.embedding import embedding_of, find_embedding_layer
from art_idfr.experiments.data import load_dataset
from art_idfr.experiments.models import make_model

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLASSES = ("n01440764", "n01443537")
SIZES = ((300, 256), (256, 300), (320, 270), (281, 262))  # (width, height): mixed, as ImageNet's are


@pytest.fixture(scope="module", autouse=True)
def _threads():
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # robust on a shared machine, where two threads wait on each other at every op
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    """train/<wnid>/*.JPEG (4 per class) and val/<wnid>/*.JPEG (2 per class): ImageNet's layout, smooth images whose
    mean brightness depends on the class."""
    root = tmp_path_factory.mktemp("imagenet") / "tree"
    rng = np.random.default_rng(0)
    for split, n in (("train", 4), ("val", 2)):
        for label, wnid in enumerate(CLASSES):
            os.makedirs(root / split / wnid)
            for i in range(n):
                w, h = SIZES[i % len(SIZES)]
                base = rng.uniform(0.2, 0.5) + 0.3 * label
                img = np.clip(base + 0.1 * rng.standard_normal((h // 8, w // 8, 3)), 0, 1)
                Image.fromarray((img * 255).astype(np.uint8)).resize((w, h), Image.BILINEAR).save(
                    root / split / wnid / f"{wnid}_{i}.JPEG", quality=90)
    return root


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """torchvision state_dict files of randomly initialised 2-class models (what --weights reads)."""
    import torchvision

    folder = tmp_path_factory.mktemp("weights")
    torch.manual_seed(0)
    torch.save(torchvision.models.resnet50(num_classes=2).state_dict(), folder / "resnet50.pth")
    inception = torchvision.models.inception_v3(weights=None, num_classes=2, aux_logits=True, init_weights=True)
    torch.save(inception.state_dict(), folder / "inception_v3.pth")  # with AuxLogits.*, as torchvision's
    return {"resnet50": str(folder / "resnet50.pth"), "inception_v3": str(folder / "inception_v3.pth")}


def _classifier(model, size):
    from art.estimators.classification import PyTorchClassifier

    return PyTorchClassifier(model=model, loss=torch.nn.CrossEntropyLoss(), input_shape=(3, size, size), nb_classes=2,
                             clip_values=(0.0, 1.0), device_type="cpu")


def _load(tree, tmp_path, size):
    return load_dataset("imagefolder", root=str(tree), image_size=size, cache_dir=str(tmp_path / "cache"),
                        verbose=False)


@pytest.mark.parametrize("name, size", [("resnet50", 224), ("inception_v3", 299)])
def test_fr_hooks_torchvisions_fc(tree, weights, tmp_path, name, size):
    """Loaded at the model's size from train/ + val/; the FR's hook point is torchvision's fc (2048-d input); the hook
    sees the embedding the head turns into the logits; an identity FR leaves the predictions as they are."""
    ds = _load(tree, tmp_path, size)
    assert ds.input_shape == (3, size, size) and (len(ds.x_train), len(ds.x_test)) == (8, 4)
    assert ds.class_names == CLASSES and ds.meta["held_out"] == "val"
    model = make_model(name, num_classes=2, input_shape=ds.input_shape, weights=weights[name])
    point = find_embedding_layer(model)
    assert (point.name, point.mode, point.module.in_features) == ("backbone.fc", "input", 2048)
    clf = _classifier(model, size)
    x = ds.x_test[[0, 2]] if name == "resnet50" else ds.x_test[[3]]  # one image at 299: CPU seconds
    with torch.no_grad():
        h, logits = embedding_of(clf, torch.from_numpy(x))
        torch.testing.assert_close(model.backbone.fc(h), logits)
    assert h.shape == (len(x), 2048)
    identity = FeatureRestorer(embedding_dim=2048, device_type="cpu")  # zero last layer: FR(h) = h
    identity.mark_fitted({"algorithm": "identity (test)"})
    restored = defend(clf, restorer=identity).predict(x, batch_size=2)
    np.testing.assert_allclose(restored, logits.numpy(), rtol=1e-5, atol=1e-5 * float(logits.abs().max()))


def test_idfr_fit_and_defended_predict_at_224(tree, weights, tmp_path):
    """ResNet-50 from its weights file at 224: Algorithm 1 (1 epoch) and Algorithm 2 (1 epoch) on two images and their
    ART FGSM AEs, in batches of two; the defended classifier predicts what the ID followed by the FR-hooked target
    does."""
    from art.attacks.evasion import FastGradientMethod

    ds = _load(tree, tmp_path, 224)
    x, y = ds.x_train[[0, 4]], ds.y_train[[0, 4]]  # one image per class
    model = make_model("resnet50", num_classes=2, input_shape=ds.input_shape, weights=weights["resnet50"])
    target = _classifier(model, 224)
    x_adv = FastGradientMethod(target, eps=8 / 255, batch_size=2).generate(x)  # crafted once for both fits
    assert np.abs(x_adv - x).max() == pytest.approx(8 / 255, abs=1e-6)
    den = IDFRDenoiser(input_shape=ds.input_shape, width=0.125, nb_epochs=1, batch_size=2, device_type="cpu")
    den.fit(x, y, classifier=target, x_adv=x_adv)
    fr = FeatureRestorer(nb_epochs=1, batch_size=4, device_type="cpu")
    fr.fit(x, y, classifier=target, denoiser=den, x_adv=x_adv)
    assert den.is_fitted and fr.is_fitted and fr.embedding_dim == 2048
    defended = defend(target, den, fr)
    x_test = ds.x_test[:2]
    preds = defended.predict(x_test, batch_size=2)
    assert preds.shape == (2, 2) and np.isfinite(preds).all()
    by_hand = defend(target, restorer=fr).predict(den(x_test)[0], batch_size=2)
    np.testing.assert_allclose(preds, by_hand, rtol=1e-4, atol=1e-4 * float(np.abs(by_hand).max()))


@pytest.fixture
def _restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_cli_with_weights_and_image_size(tree, weights, tmp_path, capsys, _restore_threads):
    """train-target --weights --target-epochs 0 --image-size (ResNet-50 from the file, used as it is), fit, evaluate
    with a surrogate from --surrogate-weights; the image size travels in model.json. 32 px keeps it to CPU seconds."""
    import hashlib

    from art_idfr.experiments.cli import main

    common = ["--preset", "tiny", "--quiet", "--threads", "1", "--seed", "0"]
    target = str(tmp_path / "target")
    assert main(["train-target", "--dataset", "imagefolder", "--data-root", str(tree), "--image-size", "32",
                 "--train-size", "8", "--test-size", "4", "--val-n", "2", "--model", "resnet50", "--width", "1",
                 "--weights", weights["resnet50"], "--epochs", "0", "--out", target] + common) == 0
    assert f"0 epochs, from {weights['resnet50']}" in capsys.readouterr().out
    meta = json.loads(open(os.path.join(target, "model.json")).read())
    assert (meta["epochs"], meta["input_shape"], meta["data"]["image_size"]) == (0, [3, 32, 32], 32)
    with open(weights["resnet50"], "rb") as f:
        assert meta["weights"]["sha256"] == hashlib.sha256(f.read()).hexdigest()
    assert not os.path.isdir(os.path.join(target, "checkpoints"))  # nothing trained

    idfr = str(tmp_path / "idfr")
    assert main(["fit", "--target", target, "--out", idfr, "--id-width", "0.125", "--id-epochs", "1", "--fr-epochs",
                 "1", "--fit-n", "4", "--idfr-eps", "8/255", "--batch-size", "2"] + common) == 0
    den = IDFRDenoiser.load(os.path.join(idfr, "denoiser.pt"))
    assert (den.input_shape, den.batch_size) == ((3, 32, 32), 2)
    capsys.readouterr()
    out = str(tmp_path / "eval")
    assert main(["evaluate", "--target", target, "--idfr", idfr, "--out", out, "--defences", "none,idfr",
                 "--threat-models", "black-box,gray-box", "--attacks", "fgsm", "--eps", "8/255", "--eval-n", "4",
                 "--whitebox-n", "1", "--query-n", "1", "--attack-batch-size", "4", "--surrogate-weights",
                 weights["resnet50"], "--surrogate-epochs", "0"] + common) == 0
    doc = json.loads(open(os.path.join(out, "results.json")).read())
    assert {(r["threat_model"], r["defence_key"]) for r in doc["records"] if r["eps"] > 0} == {
        (tm, d) for tm in ("black-box", "gray-box") for d in ("none", "idfr")}
    assert doc["config"]["image_size"] == 32 and doc["config"]["surrogate"]["weights"] == weights["resnet50"]
    with pytest.raises(SystemExit):  # evaluate takes the target from --target, not from --weights
        main(["evaluate", "--target", target, "--weights", weights["resnet50"], "--out", out] + common)
    assert "--weights builds a target" in capsys.readouterr().err


def test_benchmark_script_arguments_parse(tree, tmp_path):
    """benchmarks/imagenet_paper.py --dry-run validates its art-idfr arguments as the run would, runs nothing."""
    w = {name: tmp_path / f"{name}.pth" for name in ("resnet50", "inception_v3")}
    for path in w.values():
        path.write_bytes(b"")  # the dry run checks that the files exist, not what they hold
    script = [sys.executable, os.path.join(ROOT, "benchmarks", "imagenet_paper.py"), "--data-root", str(tree),
              "--resnet50-weights", str(w["resnet50"]), "--inception-v3-weights", str(w["inception_v3"])]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run(script + ["--dry-run", "--full", "--device", "cpu"], capture_output=True, text=True,
                          env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 2 and all(line.startswith("art-idfr demo --preset paper") for line in lines)
    assert "--image-size 224 --model resnet50" in lines[0] and "--image-size 299 --model inception_v3" in lines[1]
    assert "--surrogate-model inception_v3" in lines[0] and lines[0].endswith("--device cpu")
    w["inception_v3"].unlink()
    proc = subprocess.run(script + ["--dry-run"], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2 and "(--surrogate-weights) not found" in proc.stderr
