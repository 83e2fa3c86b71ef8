"""
Tests of art_idfr.experiments.evaluation: config and presets, the ART baseline adapters, the Fast-AT fix, report writers, and a
tiny end-to-end evaluation (generated data, tiny models) with its threat-model labels and sanity checks.
"""
import csv
import json
import os

import numpy as np
import pytest
import torch

from art_idfr.experiments.evaluation import (
    DEFENCES,
    RECORD_FIELDS,
    REPORT_FILES,
    THREAT_MODELS,
    EvalConfig,
    PreparedData,
    build_defences,
    eps_label,
    evaluate,
    load_model_dir,
    parse_eps,
    save_model_dir,
    seeded,
    train_fast_at,
    wrap_model,
)
from art_idfr.experiments.evaluation.defences import ChannelsFirstTotalVarMin, Float32FeatureSqueezing
from art_idfr.experiments.evaluation.reports import table_columns
from art_idfr.experiments.evaluation.suite import EvaluationResult, compare_whitebox
from conftest import synthetic_bars

SHAPE = (1, 12, 12)
CLASSES = 3


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Small convolutions on a shared 2-core machine are far faster on one thread (see cli._default_threads)."""
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(limits=1):  # NumPy / SciPy BLAS (TotalVarMin's L-BFGS-B) too
        yield
    torch.set_num_threads(before)


# ----------------------------------------------------------------------------------------------------------------------
# config
# ----------------------------------------------------------------------------------------------------------------------


def test_parse_eps_and_labels():
    assert parse_eps("8/255") == pytest.approx(8 / 255)
    assert parse_eps("0.3") == pytest.approx(0.3)
    assert parse_eps(1) == 1.0
    for bad in ("0", "-0.1", "1.5", "8", "abc", "1/0", float("nan"), True):
        with pytest.raises(ValueError, match=r"\(0, 1\]|parse|number"):
            parse_eps(bad)
    assert eps_label(8 / 255) == "8/255"
    assert eps_label(0.3) == "0.3"
    assert eps_label(0.0) == "clean"


def test_presets_and_validation():
    cpu = EvalConfig.preset("cpu")
    assert cpu.dataset == "mnist5k" and cpu.defences == DEFENCES and cpu.threat_models == THREAT_MODELS
    grey, colour = cpu.resolved(1), cpu.resolved(3)
    assert grey.eps[-1] == pytest.approx(0.3) and grey.fs_bit_depth == 4 and grey.fast_at_eps == pytest.approx(0.3)
    assert colour.eps[-1] == pytest.approx(32 / 255) and colour.fs_bit_depth == 5
    paper = EvalConfig.preset("paper", dataset="cifar10_jpeg", eval_n=100, whitebox_n=10, query_n=10)
    assert paper.model == "resnet18_cifar" and paper.id_epochs == 100 and paper.dataset == "cifar10_jpeg"
    cfg = EvalConfig.preset("cpu", defences="ID+FR, fs, jpeg-90", threat_models=["whitebox", "Query"],
                            eps=("8/255", 0.3, "4/255"))
    assert cfg.defences == ("idfr", "feature_squeezing", "jpeg90")
    assert cfg.threat_models == ("white-box", "query")
    assert cfg.eps == pytest.approx((4 / 255, 8 / 255, 0.3))

    with pytest.raises(ValueError, match="Valid presets: cpu, paper, tiny"):
        EvalConfig.preset("huge")
    with pytest.raises(ValueError, match="Unknown dataset 'nope'. Valid names: .*mnist5k"):
        EvalConfig(dataset="nope")
    with pytest.raises(ValueError, match=r"Unknown model 'vit' \(model\). Valid names: small_cnn"):
        EvalConfig(model="vit")
    with pytest.raises(ValueError, match="Unknown attack 'deepfool'. Valid attacks: fgsm, cw, bim"):
        EvalConfig(attacks=("fgsm", "deepfool"))
    with pytest.raises(ValueError, match="Unknown defence 'magic'. Valid defences: none, id, idfr"):
        EvalConfig(defences=("magic",))
    with pytest.raises(ValueError, match="Unknown threat model"):
        EvalConfig(threat_models=("grey-ish",))
    with pytest.raises(ValueError, match=r"outside \(0, 1\]"):
        EvalConfig(eps=(8,))
    with pytest.raises(ValueError, match="subsets of the evaluation images"):
        EvalConfig(eval_n=10, whitebox_n=20)
    with pytest.raises(ValueError, match="id_identity_weight"):
        EvalConfig(id_identity_weight=-1.0)
    with pytest.raises(ValueError, match="Unknown id_augment 'flip'. Valid: none, crop, crop_flip"):
        EvalConfig(id_augment="flip")


# ----------------------------------------------------------------------------------------------------------------------
# ART baseline adapters
# ----------------------------------------------------------------------------------------------------------------------


def test_numpy_defence_adapters():
    from art.defences.preprocessor import TotalVarMin

    rng = np.random.default_rng(0)
    x = rng.random((3, 2, 10, 9)).astype(np.float32)  # NCHW, 2 channels, non-square
    ours = ChannelsFirstTotalVarMin(clip_values=(0.0, 1.0), max_iter=3)
    np.random.seed(1)
    got, _ = ours(x)
    np.random.seed(1)
    ref, _ = TotalVarMin(clip_values=(0.0, 1.0), max_iter=3)(x.transpose(0, 2, 3, 1))
    assert got.shape == x.shape and got.dtype == np.float32
    np.testing.assert_allclose(got, ref.transpose(0, 3, 1, 2), atol=1e-6)

    # images spread over worker processes: the same masks from np.random, the same solver, the same output
    batch = rng.random((9, 3, 12, 10)).astype(np.float32)
    outs, after = [], []
    for n_jobs in (1, 2):
        np.random.seed(3)
        outs.append(ChannelsFirstTotalVarMin(clip_values=(0.0, 1.0), max_iter=3, n_jobs=n_jobs)(batch)[0])
        after.append(np.random.rand())  # and it leaves np.random where ART's loop does
    np.testing.assert_array_equal(outs[0], outs[1])
    assert outs[1].dtype == np.float32 and outs[1].shape == batch.shape and after[0] == after[1]
    assert not np.array_equal(outs[1], batch)
    with pytest.raises(ValueError, match="n_jobs must be >= 1"):
        ChannelsFirstTotalVarMin(n_jobs=0)

    squeezed, _ = Float32FeatureSqueezing(clip_values=(0.0, 1.0), bit_depth=4)(x)
    assert squeezed.dtype == np.float32  # ART 1.20 + NumPy 2 return float64 (breaks PyTorchClassifier.predict)
    np.testing.assert_allclose(squeezed * 15, np.round(squeezed * 15), atol=1e-5)


def test_build_defences_one_classifier_each():
    from art_idfr.experiments.models import make_model

    cfg = EvalConfig.preset("tiny", defences=("none", "fs", "jpeg50", "tvm", "ss")).resolved(1)
    target = wrap_model(make_model("small_cnn", CLASSES, SHAPE, width=0.25, seed=0), SHAPE, CLASSES, "cpu")
    defended = build_defences(cfg, target)
    assert list(defended) == ["none", "feature_squeezing", "jpeg50", "tvm", "spatial_smoothing"]
    x = np.random.default_rng(0).random((4, *SHAPE)).astype(np.float32)
    for key, dc in defended.items():
        assert dc.classifier.predict(x).shape == (4, CLASSES)
        if key != "none":
            assert len(dc.classifier.preprocessing_defences) == 1 and "BPDA" in dc.gradient
    # the randomised defence (TotalVarMin) is attacked with BPDA + EOT, the deterministic ones with BPDA alone
    assert type(defended["tvm"].classifier).__name__ == "EOTPyTorchClassifier"
    assert defended["tvm"].classifier.eot_samples == cfg.eot_samples == 4 and "EOT over 4" in defended["tvm"].gradient
    assert type(defended["jpeg50"].classifier).__name__ == "PyTorchClassifier" and "EOT" not in defended["jpeg50"].gradient
    with pytest.raises(ValueError, match="eot_samples"):
        EvalConfig.preset("tiny", eot_samples=0)
    with pytest.raises(ValueError, match="needs a fitted IDFRDenoiser"):
        build_defences(cfg.replace(defences=("idfr",)), target)
    with pytest.raises(ValueError, match="fast_at"):
        build_defences(cfg.replace(defences=("fast_at",)), target)


def test_adaptive_description_says_how_the_fr_was_trained():
    from art_idfr import FeatureRestorer
    from art_idfr.experiments.evaluation.defences import adaptive_description

    assert "FeatureRestorer" not in adaptive_description(None)
    frozen, joint = FeatureRestorer(device_type="cpu"), FeatureRestorer(device_type="cpu")
    frozen.mark_fitted({"algorithm": "algorithm2"})
    joint.mark_fitted({"algorithm": "algorithm2", "adaptive": {"train_restorer": True}})
    assert adaptive_description(frozen).endswith("FeatureRestorer hook (Algorithm 2, kept frozen)")
    assert adaptive_description(joint).endswith("FeatureRestorer hook, trained jointly with the ID")


# ----------------------------------------------------------------------------------------------------------------------
# report writers on a synthetic result
# ----------------------------------------------------------------------------------------------------------------------


def _fake_result(tmp_eps=(4 / 255, 0.3)) -> EvaluationResult:
    cfg = EvalConfig.preset("tiny", eps=tmp_eps, defences=("none", "idfr", "jpeg75"))
    labels = {"none": "none", "idfr": "ID+FR", "jpeg75": "JPEG q=75"}
    rng = np.random.default_rng(0)
    records = []
    for tm in THREAT_MODELS:
        attacks = ["square"] if tm == "query" else ["fgsm", "cw", "bim"]
        n = {"query": 8, "white-box": 16}.get(tm, 40)
        for key, label in labels.items():
            cells = [("clean", 0.0)] + [(a, e) for a in attacks for e in cfg.eps]
            for attack, eps in cells:
                acc = float(rng.integers(0, n + 1)) / n
                records.append({
                    "threat_model": tm, "defence": label, "defence_key": key, "attack": attack, "eps": eps,
                    "eps_label": eps_label(eps), "accuracy": acc, "n": n, "n_correct": int(round(acc * n)),
                    "gradient": "BPDA identity" if (tm == "white-box" and key == "jpeg75") else "exact",
                    "source": "x", "source_accuracy": None, "attack_params": {"eps": eps}, "seed": 0,
                    "dataset": "synthetic", "model": "small_cnn (width 0.25)", "device": "cpu",
                    "torch_version": torch.__version__, "art_version": "1.20.1", "command": "pytest",
                })
    metadata = {"dataset": "synthetic", "model": "small_cnn (width 0.25)", "device": "cpu", "seed": 0,
                "n": {"black-box": 40, "gray-box": 40, "white-box": 16, "query": 8},
                "defences": [{"key": k, "label": v} for k, v in labels.items()], "timings_seconds": {"total": 1.0}}
    sanity = {"passed": True, "warnings": [], "checks": {
        "undefended_whitebox_large_eps": {"status": "PASS", "eps": 0.5, "accuracy": 0.0, "n": 16, "threshold": 0.05},
    }}
    return EvaluationResult(records, metadata, sanity, cfg)


def test_report_files_well_formed(tmp_path):
    result = _fake_result()
    paths = result.write(str(tmp_path))
    assert set(paths) == set(REPORT_FILES)

    doc = json.loads(open(paths["json"]).read())
    assert set(doc) == {"metadata", "config", "sanity_checks", "records"}
    assert len(doc["records"]) == len(result.records)
    for rec in doc["records"]:
        assert set(RECORD_FIELDS) <= set(rec)
        assert rec["threat_model"] in THREAT_MODELS and 0.0 <= rec["accuracy"] <= 1.0

    with open(paths["csv"], newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(result.records)
    assert list(rows[0]) == list(RECORD_FIELDS)

    md = open(paths["markdown"]).read()
    for tm in THREAT_MODELS:
        assert f"### Threat model: {tm}" in md
    blocks = md.split("### Threat model: ")[1:]
    bb = blocks[0]
    header = next(line for line in bb.splitlines() if line.startswith("| defence |"))
    cols = [c.strip() for c in header.strip("|").split("|")][1:]
    assert cols == ["clean"] + [f"{a} {e}" for a in ("FGSM", "CW", "BIM") for e in ("4/255", "0.3")]
    rows_md = [line for line in bb.splitlines() if line.startswith("| ") and not line.startswith("| defence")]
    assert [r.split("|")[1].strip() for r in rows_md] == ["none", "ID+FR", "JPEG q=75"]
    assert all(len(r.strip("|").split("|")) == len(cols) + 1 for r in rows_md)
    assert "n = 40" in bb and "seed = 0" in bb and "device: cpu" in bb and "dataset: synthetic" in bb
    wb = blocks[2]
    assert "JPEG q=75 †" in wb and "BPDA" in wb
    q_header = next(line for line in blocks[3].splitlines() if line.startswith("| defence |"))
    assert "Square 4/255" in q_header

    png = open(paths["png"], "rb").read()
    assert len(png) > 1000 and png[:8] == b"\x89PNG\r\n\x1a\n"
    assert table_columns(result.records, "query") == [("clean", 0.0), ("square", 4 / 255), ("square", 0.3)]


# ----------------------------------------------------------------------------------------------------------------------
# tiny end-to-end evaluation on generated data
# ----------------------------------------------------------------------------------------------------------------------


def _synthetic(n_train=360, n_test=60, seed=0) -> PreparedData:
    """Three classes of 12x12 images: a bright bar (horizontal, vertical, diagonal) on noise; easy to learn."""
    return synthetic_bars(n_train, n_test, 30, seed)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    from art_idfr import FeatureRestorer, IDFRDenoiser
    from art_idfr.experiments.models import make_model, train_model

    data = _synthetic()
    cfg = EvalConfig.preset(
        "tiny", width=0.25, surrogate_width=0.25, eps=(0.1, 0.3), attacks=("fgsm", "bim"), attack_iter=5,
        eval_n=30, whitebox_n=12, query_n=6, query_iter=5, fast_at_epochs=1, fast_at_eps=0.1, tvm_max_iter=2,
        defences=("none", "id", "idfr", "feature_squeezing", "jpeg50", "tvm", "fast_at"),
    ).resolved(1)

    def net(seed):
        m = make_model("small_cnn", CLASSES, SHAPE, width=0.25, seed=seed)
        train_model(m, data.x_train, data.y_train, epochs=3, batch_size=32, device="cpu", seed=seed, verbose=False)
        return m

    target, surrogate = net(0), net(7)
    clf = wrap_model(target, SHAPE, CLASSES, "cpu")
    den = IDFRDenoiser(SHAPE, width=0.25, nb_epochs=1, device_type="cpu", batch_size=64)
    den.fit(data.x_train[:120], data.y_train[:120], classifier=clf,
            x_adv=np.clip(data.x_train[:120] + 0.1 * np.sign(np.random.default_rng(0).standard_normal(
                (120, *SHAPE))), 0, 1).astype(np.float32))
    fr = FeatureRestorer(nb_epochs=1, device_type="cpu", batch_size=64)
    fr.fit(data.x_train[:120], data.y_train[:120], classifier=clf, denoiser=den)
    fast_dir = str(tmp_path_factory.mktemp("fast_at"))
    fast, fast_meta = train_fast_at(cfg, data, out_dir=fast_dir, verbose=False)
    fast_meta["folder"] = fast_dir
    result = evaluate(cfg, data, target, surrogate, den, fr, fast, command="pytest tiny", verbose=False)
    return cfg, data, (target, surrogate, den, fr, fast), fast_meta, result


def test_tiny_end_to_end_labels_and_sanity(tiny_run, tmp_path):
    cfg, data, _, _, result = tiny_run
    recs = result.records
    assert {r["threat_model"] for r in recs} == set(THREAT_MODELS)
    assert all(set(RECORD_FIELDS) <= set(r) for r in recs)
    # one record per defence x threat model x (clean + attack x eps)
    n_def = len(cfg.defences)
    assert len(recs) == n_def * (3 * (1 + len(cfg.attacks) * len(cfg.eps)) + (1 + len(cfg.eps)))
    assert {r["n"] for r in recs if r["threat_model"] == "white-box"} == {12}
    assert {r["n"] for r in recs if r["threat_model"] == "query"} == {6}
    assert {r["n"] for r in recs if r["threat_model"] == "black-box"} == {30}
    assert {r["attack"] for r in recs if r["threat_model"] == "query"} == {"clean", "square"}
    # Square with one pass per iteration on the deterministic defences; ART's own loop on the randomised TotalVarMin
    one_pass = {r["defence_key"]: r["attack_params"].get("one_pass", False) for r in recs
                if r["threat_model"] == "query" and r["attack"] == "square"}
    assert one_pass == {key: key != "tvm" for key in cfg.defences}
    grads = {r["defence_key"]: r["gradient"] for r in recs if r["threat_model"] == "white-box" and r["attack"] != "clean"}
    assert "BPDA" in grads["jpeg50"] and "BPDA" in grads["tvm"] and "autograd" in grads["idfr"]
    assert all(r["command"] == "pytest tiny" and r["dataset"] == "synthetic" for r in recs)
    assert all("surrogate" in r["source"] for r in recs if r["threat_model"] == "black-box" and r["attack"] != "clean")

    # the target learned the task, and the sanity checks ran
    assert result.accuracy("gray-box", "none") > 0.8
    checks = result.sanity_checks["checks"]
    big = checks["undefended_whitebox_large_eps"]
    assert big["status"] == "PASS" and big["accuracy"] < 0.05 and big["n"] == 12
    grad = checks["defended_gradient"]
    assert grad["status"] == "PASS" and grad["per_defence"]["idfr"]["finite"]
    assert grad["per_defence"]["idfr"]["fraction_nonzero_samples"] == 1.0
    cmp = checks["whitebox_not_above_blackbox"]
    assert cmp["n_comparisons"] == n_def * len(cfg.attacks) * len(cfg.eps)
    assert cmp["status"] in ("PASS", "WARN", "FAIL") and len(cmp["violations"]) == cmp["n_violations"]
    assert cmp["status"] != "FAIL" or cmp["n_significant"] > 0

    paths = result.write(str(tmp_path))
    md = open(paths["markdown"]).read()
    for tm in THREAT_MODELS:
        assert f"### Threat model: {tm}" in md
    assert "Sanity checks" in md and "undefended white-box BIM eps=0.5" in md


def _hits(n_right: int, n: int = 100, offset: int = 0) -> np.ndarray:
    h = np.zeros(n, dtype=bool)
    h[offset:offset + n_right] = True
    return h


def test_whitebox_check_fails_only_beyond_sampling_noise():
    wb_idx = np.arange(100)
    labels = {"tvm": ("TotalVarMin", "BPDA"), "idfr": ("ID+FR", "autograd")}
    # TVM: white-box right on one more image than black-box (91 vs 90): flagged, but within noise -> WARN
    # ID+FR: white-box 60 vs black-box 40 on the same images: flagged and significant -> FAIL
    per_sample = {("black-box", "tvm", "fgsm", 0.1): _hits(90), ("white-box", "tvm", "fgsm", 0.1): _hits(91),
                  ("black-box", "idfr", "fgsm", 0.1): _hits(40), ("white-box", "idfr", "fgsm", 0.1): _hits(60),
                  ("black-box", "idfr", "bim", 0.1): _hits(50), ("white-box", "idfr", "bim", 0.1): _hits(10)}
    check, flags = compare_whitebox(per_sample, wb_idx, "black-box", labels)
    assert check["n_comparisons"] == 3 and check["n_violations"] == 2 and check["n_significant"] == 1
    by_key = {v["defence_key"]: v for v in check["violations"]}
    assert (by_key["tvm"]["wins"], by_key["tvm"]["losses"], by_key["tvm"]["significant"]) == (1, 0, False)
    assert by_key["tvm"]["p_value"] == pytest.approx(0.5)
    assert by_key["idfr"]["wins"] == 20 and by_key["idfr"]["p_value"] < 1e-5 and by_key["idfr"]["significant"]
    assert check["status"] == "FAIL" and len(flags) == 2 and "within sampling noise" in flags[0] + flags[1]
    # only the within-noise violation left: flagged (WARN), not failed; none at all: PASS
    del per_sample[("white-box", "idfr", "fgsm", 0.1)]
    assert compare_whitebox(per_sample, wb_idx, "black-box", labels)[0]["status"] == "WARN"
    per_sample[("white-box", "tvm", "fgsm", 0.1)] = _hits(90, offset=5)  # same accuracy, other images
    check, flags = compare_whitebox(per_sample, wb_idx, "black-box", labels)
    assert check["status"] == "PASS" and not flags and check["n_comparisons"] == 2
    # the gray-box comparison is informational: a significant excess is a WARN
    per_sample[("white-box", "idfr", "bim", 0.1)] = _hits(90)
    assert compare_whitebox(per_sample, wb_idx, "black-box", labels, failing=False)[0]["status"] == "WARN"
    assert compare_whitebox(per_sample, wb_idx, "black-box", labels)[0]["status"] == "FAIL"


def test_autoattack_column(tiny_run):
    """ART's AutoAttack (default ensemble) is one of the table attacks, labelled in every output."""
    cfg, data, (target, surrogate, den, fr, fast), _, _ = tiny_run
    sub = cfg.replace(defences=("none",), threat_models=("gray-box", "white-box"), attacks=("aa",), eps=(0.3,),
                      autoattack_transfer=True)
    assert sub.attacks == ("autoattack",)
    res = evaluate(sub, data, target, surrogate, den, fr, fast, command="pytest aa", verbose=False)
    for tm in ("gray-box", "white-box"):
        assert res.accuracy(tm, "none", "autoattack", 0.3) < res.accuracy(tm, "none") - 0.5
    assert {r["attack_params"].get("ensemble", "") for r in res.records if r["attack"] == "autoattack"} != {""}
    assert table_columns(res.records, "white-box") == [("clean", 0.0), ("autoattack", 0.3)]
    assert "| AutoAttack 0.3 |" in res.markdown()
    # its Square member runs one pass per iteration on the (deterministic) defended classifier, not on the source
    one_pass = {r["threat_model"]: r["attack_params"].get("one_pass", False) for r in res.records
                if r["attack"] == "autoattack"}
    assert one_pass == {"white-box": True, "gray-box": False}


def test_tiny_evaluation_is_deterministic(tiny_run):
    cfg, data, (target, surrogate, den, fr, fast), _, result = tiny_run
    sub = cfg.replace(defences=("none", "idfr", "tvm"), threat_models=("gray-box", "white-box", "query"),
                      eps=(0.1,))
    again = evaluate(sub, data, target, surrogate, den, fr, fast, command="pytest tiny", verbose=False)
    # same seed -> same numbers, and a cell does not depend on which other cells run
    for r in again.records:
        assert r["accuracy"] == result.accuracy(r["threat_model"], r["defence_key"], r["attack"], r["eps"])


def test_fast_at_trains_batchnorm_and_saves(tiny_run):
    cfg, data, _, fast_meta, _ = tiny_run
    assert fast_meta["role"] == "fast_at" and "BatchNorm" in fast_meta["trainer"]
    model, meta = load_model_dir(fast_meta["folder"], device="cpu")
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and all(int(b.num_batches_tracked) > 0 for b in bns)  # ART's FBF alone leaves them at 0
    assert meta["settings"]["fast_at_eps"] == pytest.approx(0.1)
    # a second call with the same settings reuses the saved model instead of retraining
    again, meta2 = train_fast_at(cfg, data, out_dir=fast_meta["folder"], verbose=False)
    assert meta2["train_seconds"] == pytest.approx(meta["train_seconds"])


def test_model_dir_roundtrip(tmp_path):
    from art_idfr.experiments.models import make_model

    model = make_model("small_cnn", CLASSES, SHAPE, width=0.25, seed=3)
    meta = {"model": "small_cnn", "width": 0.25, "num_classes": CLASSES, "input_shape": list(SHAPE)}
    save_model_dir(model, meta, str(tmp_path))
    loaded, meta2 = load_model_dir(str(tmp_path), device="cpu")
    x = torch.rand(2, *SHAPE)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model.eval()(x))
    assert meta2["model"] == "small_cnn"
    with pytest.raises(FileNotFoundError, match="not a model folder"):
        load_model_dir(str(tmp_path / "missing"))


def test_cpu_set_up_limits_threads_and_flushes_denormals():
    from art_idfr.experiments.evaluation import set_up_cpu

    before = torch.get_num_threads()
    tiny = torch.tensor([1e-40], dtype=torch.float32)  # a denormal float32
    try:
        set_up_cpu(1)
        assert torch.get_num_threads() == 1
        assert float(tiny * 1.0) == 0.0  # flushed: kernels no longer compute on denormals
    finally:
        torch.set_num_threads(before)
        torch.set_flush_denormal(False)
    assert float(tiny * 1.0) > 0.0
    with pytest.raises(ValueError, match="threads must be >= 1"):
        set_up_cpu(0)


def test_seeded_restores_global_state():
    np.random.seed(5)
    expected = np.random.rand()
    np.random.seed(5)
    with seeded(123):
        a = np.random.rand()
    assert np.random.rand() == expected
    with seeded(123):
        assert np.random.rand() == a


def test_a_fresh_idfr_fit_and_its_reload_are_the_same_cell_cache_component(tmp_path):
    """A run that fits IDFR and one that resumes from its folder key the ID's evaluation cells alike."""
    from art_idfr.experiments.evaluation import fit_idfr, load_idfr
    from art_idfr.experiments.evaluation.cells import _component
    from art_idfr.experiments.models import make_model

    data = _synthetic(n_train=60, n_test=10)
    cfg = EvalConfig.preset("tiny", width=0.25, fit_n=40, id_epochs=1, fr_epochs=1, idfr_attacks=("fgsm",),
                            idfr_eps=(0.1,), device="cpu").resolved(1)
    target = make_model("small_cnn", CLASSES, SHAPE, width=0.25, seed=0)
    den, res, _ = fit_idfr(cfg, data, target, str(tmp_path / "idfr"), verbose=True)
    den2, res2, _ = load_idfr(str(tmp_path / "idfr"), device_type="cpu")
    assert _component(den) == _component(den2) and _component(res) == _component(res2)


def test_fit_idfr_with_extra_ae_sources(tmp_path, monkeypatch):
    """idfr_source_model: the training attacks run on the target *and* on each extra model, each of its own seed
    and folder (and id_augment reaches the denoiser and the cache key)."""
    import art_idfr.experiments.attacks as attacks_mod
    from art_idfr.experiments.evaluation import fit_idfr
    from art_idfr.experiments.models import make_model, train_model

    data = _synthetic(n_train=120, n_test=30)
    cfg = EvalConfig.preset("tiny", width=0.25, idfr_source_model="small_cnn,small_cnn", idfr_source_width="0.25,0.5",
                            idfr_source_epochs=1, fit_n=60, id_epochs=1, fr_epochs=1, idfr_attacks=("fgsm",),
                            idfr_eps=(0.1,), id_augment="crop_flip", device="cpu").resolved(1)
    target = make_model("small_cnn", CLASSES, SHAPE, width=0.25, seed=0)
    train_model(target, data.x_train, data.y_train, epochs=1, batch_size=32, device="cpu", seed=0, verbose=False)
    built = []
    real = attacks_mod.make_attack
    monkeypatch.setattr(attacks_mod, "make_attack",
                        lambda name, est, eps, **kw: built.append(est.model) or real(name, est, eps, **kw))
    # a clock that only the extra sources' training moves (1,000 s each): their time is in their own model.json,
    # so the IDFR fit's fit_seconds must not count it again (benchmarks/run_times.py sums both)
    import types

    import art_idfr.experiments.evaluation.pipeline.idfr as idfr_mod

    clock = [0.0]
    monkeypatch.setattr(idfr_mod, "time", types.SimpleNamespace(perf_counter=lambda: clock[0]))
    real_train = idfr_mod.train_network
    monkeypatch.setattr(idfr_mod, "train_network",
                        lambda *a, **kw: clock.__setitem__(0, clock[0] + 1000.0) or real_train(*a, **kw))
    den, res, meta = fit_idfr(cfg, data, target, str(tmp_path / "idfr"), verbose=False)
    assert clock[0] == 2000.0 and meta["fit_seconds"] == 0.0
    assert len(built) == 3 and built[0] is target and len({id(m) for m in built}) == 3  # one attack per source
    assert [(m["model"], m["width"], m["seed"]) for m in meta["idfr_source"]] == [
        ("small_cnn", 0.25, cfg.seed + 3000), ("small_cnn", 0.5, cfg.seed + 4000)]
    assert [m["seed"] for m in meta["settings"]["idfr_source"]] == [cfg.seed + 3000, cfg.seed + 4000]
    assert (tmp_path / "idfr_source" / "model.pt").is_file() and (tmp_path / "idfr_source_2" / "model.pt").is_file()
    assert json.loads((tmp_path / "idfr_source_2" / "model.json").read_text())["seed"] == cfg.seed + 4000
    assert den.is_fitted and res.is_fitted
    assert den.augment == "crop_flip" and meta["settings"]["id_augment"] == "crop_flip"
    # the extra source never is the black-box surrogate, and it is validated like the other models
    with pytest.raises(ValueError, match="never train on AEs of the black-box surrogate"):
        EvalConfig(idfr_source_model="small_cnn", idfr_source_seed_offset=1000)
    with pytest.raises(ValueError, match=r"Unknown model 'vit' \(idfr_source_model\)"):
        EvalConfig(idfr_source_model="vit")
    with pytest.raises(ValueError, match=r"source 1 would get seed offset 1500"):  # the second one hits it
        EvalConfig(idfr_source_model="small_cnn,small_cnn", idfr_source_seed_offset=500, surrogate_seed_offset=1500)
    with pytest.raises(ValueError, match=r"one per idfr_source_model \(2\)"):
        EvalConfig(idfr_source_model="small_cnn,small_cnn", idfr_source_width=(0.5, 0.5, 0.5))
    with pytest.raises(ValueError, match="must be positive numbers"):
        EvalConfig(idfr_source_model="small_cnn", idfr_source_width="wide")
    # a single extra source keeps the cache key of the runs made before several were possible: a dict, not a list
    from art_idfr.experiments.evaluation.pipeline import _idfr_settings
    one = EvalConfig.preset("tiny", idfr_source_model="vgg16_bn_cifar", idfr_source_width=0.25)
    assert _idfr_settings(one)["idfr_source"] == {"model": "vgg16_bn_cifar", "width": 0.25, "epochs": 3, "seed": 3000}
    with pytest.raises(ValueError, match="out_dir or a source_dir"):
        fit_idfr(cfg, data, target, None, verbose=False)


def test_interrupted_evaluation_leaves_partial_reports_and_resumes(tiny_run, tmp_path, monkeypatch, caplog):
    import copy

    import art_idfr.experiments.attacks as attacks_mod
    from art_idfr.experiments.evaluation.resume import CHECKPOINT_FILES, PARTIAL_FILES

    cfg, data, (target, surrogate, den, fr, fast), _, result = tiny_run
    sub = cfg.replace(defences=("none", "idfr"))
    real = attacks_mod.make_attack
    calls = []

    def stop_at_white_box(name, clf, eps, **kw):  # black-box and gray-box craft len(attacks) x len(eps) each
        calls.append(name)
        if len(calls) > 2 * len(sub.attacks) * len(sub.eps):
            raise RuntimeError("time limit")
        return real(name, clf, eps, **kw)

    monkeypatch.setattr(attacks_mod, "make_attack", stop_at_white_box)
    with pytest.raises(RuntimeError, match="time limit"):
        evaluate(sub, data, target, surrogate, den, fr, fast, command="pytest tiny", verbose=False,
                 checkpoint_dir=str(tmp_path))
    # the finished threat models survive the crash, labelled partial
    partial = json.load(open(tmp_path / PARTIAL_FILES["json"]))
    assert partial["metadata"]["partial"] is True
    assert partial["metadata"]["finished_threat_models"] == ["black-box", "gray-box"]
    from art_idfr.experiments.evaluation.cells import FOLDER
    stored = {p.stem for p in (tmp_path / FOLDER).glob("*.json")}  # the transfer cells of the finished threat models
    assert stored and set(partial["metadata"]["cell_keys"]) == stored
    assert {r["threat_model"] for r in partial["records"]} == {"black-box", "gray-box"}
    for r in partial["records"]:
        assert r["accuracy"] == result.accuracy(r["threat_model"], r["defence_key"], r["attack"], r["eps"])
    md = open(tmp_path / PARTIAL_FILES["markdown"]).read()
    assert "PARTIAL REPORT" in md and "white-box, query" in md and "Sanity checks: not run" in md
    assert "Threat model: black-box" in md and "Threat model: white-box" not in md

    # other model weights: the checkpoint is not used (a fresh run would craft the black-box AEs again)
    changed = copy.deepcopy(fr)
    with torch.no_grad():
        next(changed.network.parameters()).add_(1.0)
    calls.clear()
    with pytest.raises(RuntimeError, match="time limit"):
        evaluate(sub, data, target, surrogate, den, changed, fast, command="pytest tiny", verbose=False,
                 checkpoint_dir=str(tmp_path / "other"))
    assert calls[:2] == [sub.attacks[0]] * len(sub.eps)  # started from black-box again

    # the same run again: black-box and gray-box come from the checkpoint, the rest is computed
    calls.clear()
    monkeypatch.setattr(attacks_mod, "make_attack", lambda name, *a, **kw: calls.append(name) or real(name, *a, **kw))
    again = evaluate(sub, data, target, surrogate, den, fr, fast, command="pytest tiny", verbose=False,
                     checkpoint_dir=str(tmp_path))
    assert set(again.metadata["resumed"]) == {"black-box", "gray-box"}
    # the resumed threat models' cells come back from the checkpoint: the run names every cell it used
    assert set(again.metadata["cell_keys"]) == {p.stem for p in (tmp_path / FOLDER).glob("*.json")} > stored
    n_cells = len(sub.defences) * len(sub.attacks) * len(sub.eps) + len(sub.defences) * len(sub.eps) + 1
    n_masking = 4 * len(sub.defences)  # per defence: Square, PGD at a large eps, PGD short and long
    assert len(calls) == n_cells + n_masking  # white-box + query + the sanity checks, nothing transferred again
    for r in again.records:
        assert r["accuracy"] == result.accuracy(r["threat_model"], r["defence_key"], r["attack"], r["eps"])
    assert again.sanity_checks["checks"]["whitebox_not_above_blackbox"]["n_comparisons"] == \
        len(sub.defences) * len(sub.attacks) * len(sub.eps)
    # a checkpoint written before it kept the cell keys: the run names no cells rather than too few
    doc = json.load(open(tmp_path / CHECKPOINT_FILES["json"]))
    for entry in doc["threat_models"].values():
        del entry["cells"]
    json.dump(doc, open(tmp_path / CHECKPOINT_FILES["json"], "w"))
    older = evaluate(sub.replace(threat_models=("black-box", "gray-box")), data, target, surrogate, den, fr, fast,
                     command="pytest tiny", verbose=False, checkpoint_dir=str(tmp_path))
    assert set(older.metadata["resumed"]) == {"black-box", "gray-box"} and "cell_keys" not in older.metadata
    paths = again.write(str(tmp_path))
    assert "black-box: taken from the evaluation checkpoint" in open(paths["markdown"]).read()
    for name in (*CHECKPOINT_FILES.values(), *PARTIAL_FILES.values()):
        assert not (tmp_path / name).exists()  # complete reports written: recovery files removed

    # a damaged checkpoint is ignored with a warning, never trusted
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / CHECKPOINT_FILES["json"]).write_text("{not json")
    sub2 = sub.replace(threat_models=("gray-box",), attacks=("fgsm",))
    with caplog.at_level("WARNING"):
        fresh = evaluate(sub2, data, target, surrogate, den, fr, fast, verbose=False,
                         checkpoint_dir=str(tmp_path / "bad"))
    assert "unreadable" in caplog.text and "resumed" not in fresh.metadata


def test_cells_are_reused_only_when_nothing_they_depend_on_changed(tiny_run, tmp_path, monkeypatch, caplog):
    import copy

    import art_idfr.experiments.attacks as attacks_mod
    from art_idfr.experiments.evaluation.cells import FOLDER, cell_seconds

    cfg, data, (target, surrogate, den, fr, fast), _, result = tiny_run
    sub = cfg.replace(defences=("none", "idfr"), threat_models=("white-box", "query"))
    real, calls = attacks_mod.make_attack, []
    monkeypatch.setattr(attacks_mod, "make_attack", lambda name, *a, **kw: calls.append(name) or real(name, *a, **kw))

    def run(restorer, config=sub, **kw):
        calls.clear()
        res = evaluate(config, data, target, surrogate, den, restorer, fast, command="pytest tiny", verbose=False,
                       checkpoint_dir=str(tmp_path), **kw)
        res.write(str(tmp_path))  # as the CLI does: the threat-model checkpoint is removed, the cells stay
        return res

    def same_numbers(a, b):
        assert [(r["threat_model"], r["defence_key"], r["attack"], r["eps"], r["n_correct"]) for r in a.records] == \
            [(r["threat_model"], r["defence_key"], r["attack"], r["eps"], r["n_correct"]) for r in b.records]
        assert a.sanity_checks["checks"] == b.sanity_checks["checks"]

    per_defence = {"white-box": len(sub.attacks) * len(sub.eps), "query": len(sub.eps), "masking": 4}
    n_cells = 2 * sum(per_defence.values())
    first = run(fr)
    assert len(calls) == n_cells + 1  # + the undefended large-eps BIM of the sanity checks, not a cell
    assert len(list((tmp_path / FOLDER).glob("*.json"))) == n_cells and "reused_cells" not in first.metadata
    assert set(first.metadata["cell_keys"]) == {p.stem for p in (tmp_path / FOLDER).glob("*.json")}
    times = cell_seconds(str(tmp_path / FOLDER))  # every cell keeps the seconds it took, per threat model / defence
    labels = {r["defence_key"]: r["defence"] for r in first.records}
    assert set(times) == {(kind, labels[key]) for kind in per_defence for key in ("none", "idfr")}
    assert all(t["cells"] == t["timed"] == per_defence[kind] and t["seconds"] > 0 for (kind, _), t in times.items())
    for r in first.records:
        assert r["accuracy"] == result.accuracy(r["threat_model"], r["defence_key"], r["attack"], r["eps"])

    again = run(fr)  # nothing changed: every cell from the cache, the same numbers and checks
    assert calls == ["bim"] and again.metadata["reused_cells"] == {k: 2 * v for k, v in per_defence.items()}
    same_numbers(first, again)
    assert "attack cells taken from OUT/eval_cells" in open(tmp_path / "results.md").read()

    changed = copy.deepcopy(fr)  # another FR: only ID+FR's cells are measured again
    with torch.no_grad():
        next(changed.network.parameters()).add_(1.0)
    other = run(changed)
    assert len(calls) == sum(per_defence.values()) + 1
    kept = {p.stem for p in (tmp_path / FOLDER).glob("*.json")}  # the folder keeps both FRs' cells
    used = set(other.metadata["cell_keys"])  # the run names its own
    assert len(kept) == n_cells + sum(per_defence.values()) and len(used) == n_cells
    assert used < kept and used != set(first.metadata["cell_keys"])

    fresh = run(fr, reuse_cells=False)  # --no-cell-reuse
    assert len(calls) == n_cells + 1 and "reused_cells" not in fresh.metadata
    same_numbers(first, fresh)
    run(fr, reuse_cells=True)
    assert calls == ["bim"]

    for path in (tmp_path / FOLDER).glob("*.json"):  # damaged cells are measured again, with a warning
        path.write_text('{"format": "art-idfr-eval-cell/1", "key": "%s", "hits": "1"}' % path.stem)
    with caplog.at_level("WARNING"):
        damaged = run(fr)
    assert caplog.text.count("unreadable") == n_cells and len(calls) == n_cells + 1
    same_numbers(first, damaged)

    run(fr, config=sub.replace(query_iter=sub.query_iter + 1))  # other evaluation settings: nothing is reused
    assert len(calls) == n_cells + 1


def test_transfer_cells_craft_only_what_the_cache_lacks(tiny_run, tmp_path, monkeypatch):
    import copy

    import art_idfr.experiments.attacks as attacks_mod

    cfg, data, (target, surrogate, den, fr, fast), _, result = tiny_run
    sub = cfg.replace(defences=("none", "idfr"), threat_models=("black-box", "gray-box"))
    real, calls = attacks_mod.make_attack, []
    monkeypatch.setattr(attacks_mod, "make_attack", lambda name, *a, **kw: calls.append(name) or real(name, *a, **kw))

    def run(restorer):
        calls.clear()
        res = evaluate(sub, data, target, surrogate, den, restorer, fast, command="pytest tiny", verbose=False,
                       checkpoint_dir=str(tmp_path))
        res.write(str(tmp_path))  # the threat-model checkpoint is removed: only the cells can be reused
        return res

    crafts = 2 * len(sub.attacks) * len(sub.eps)  # per transfer threat model: one per (attack, eps)
    first = run(fr)
    masking = len(calls) - crafts  # the gradient-masking checks' attacks
    for r in first.records:  # the same numbers as the full run of every defence, which crafted the same AEs
        assert r["accuracy"] == result.accuracy(r["threat_model"], r["defence_key"], r["attack"], r["eps"])
        assert r["source_accuracy"] == next(q["source_accuracy"] for q in result.records if q["threat_model"] ==
                                            r["threat_model"] and q["attack"] == r["attack"] and q["eps"] == r["eps"])

    again = run(fr)  # nothing changed: no AE is crafted, every transfer cell comes from the cache
    assert calls == ["bim"] and again.metadata["reused_cells"]["black-box"] == len(sub.defences) * crafts // 2
    assert [r["n_correct"] for r in again.records] == [r["n_correct"] for r in first.records]

    changed = copy.deepcopy(fr)  # another FR: the AEs are crafted again for ID+FR alone
    with torch.no_grad():
        next(changed.network.parameters()).add_(1.0)
    other = run(changed)
    assert len(calls) == crafts + masking // 2 + 1 and other.metadata["reused_cells"]["gray-box"] == crafts // 2
    assert [r["n_correct"] for r in other.records if r["defence_key"] == "none"] == \
        [r["n_correct"] for r in first.records if r["defence_key"] == "none"]


def test_json_clean_makes_strict_json():
    from art_idfr._utils import json_clean

    value = {1: (np.float32(0.5), float("nan"), [np.int64(3), float("inf")]), "ok": "text", "none": None}
    clean = json_clean(value)
    assert clean == {"1": [0.5, None, [3, None]], "ok": "text", "none": None}
    assert type(clean["1"][1 - 1]) is float and type(clean["1"][2][0]) is int
    json.dumps(clean, allow_nan=False)


def test_report_constants_live_apart_from_the_suite():
    from art_idfr.experiments.evaluation import labels, reports, result, suite

    assert suite.RECORD_FIELDS is labels.RECORD_FIELDS and suite.ATTACK_LABELS is labels.ATTACK_LABELS
    assert suite.THREAT_DESCRIPTIONS is labels.THREAT_DESCRIPTIONS and reports.ATTACK_LABELS is labels.ATTACK_LABELS
    assert suite.EvaluationResult is result.EvaluationResult is EvaluationResult
    assert set(labels.THREAT_DESCRIPTIONS) == set(THREAT_MODELS)


def test_eot_gradient_is_the_mean_over_random_draws(monkeypatch):
    from art_idfr.experiments.attacks import make_attack
    from art_idfr.experiments.evaluation.defences import EOTPyTorchClassifier
    from art_idfr.experiments.models import make_model

    model = make_model("small_cnn", CLASSES, SHAPE, width=0.25, seed=0)
    tvm = ChannelsFirstTotalVarMin(prob=0.3, lamb=0.05, max_iter=2, clip_values=(0.0, 1.0))
    single = wrap_model(model, SHAPE, CLASSES, "cpu", preprocessing_defences=[tvm])
    eot = wrap_model(model, SHAPE, CLASSES, "cpu", preprocessing_defences=[tvm], eot_samples=3)
    assert isinstance(eot, EOTPyTorchClassifier) and not isinstance(single, EOTPyTorchClassifier)
    x = np.random.default_rng(1).random((5, *SHAPE)).astype(np.float32)
    y = np.eye(CLASSES, dtype=np.float32)[[0, 1, 2, 0, 1]]
    with seeded(5):
        g_eot = eot.loss_gradient(x, y)
        c_eot = eot.class_gradient(x, label=1)
    with seeded(5):
        draws = [single.loss_gradient(x, y) for _ in range(3)]
        c_draws = [single.class_gradient(x, label=1) for _ in range(3)]
    np.testing.assert_allclose(g_eot, np.mean(draws, axis=0), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(c_eot, np.mean(c_draws, axis=0), rtol=1e-5, atol=1e-7)
    assert not np.allclose(draws[0], draws[1])  # the mask really is redrawn: one draw is not the expectation

    # the CW-eps attack averages its loss over as many forward passes (each a fresh TotalVarMin draw)
    calls = []
    real_call = ChannelsFirstTotalVarMin.__call__
    monkeypatch.setattr(ChannelsFirstTotalVarMin, "__call__", lambda self, *a, **k: calls.append(1) or
                        real_call(self, *a, **k))
    atk = make_attack("cw", eot, 0.1, max_iter=2, batch_size=8, seed=0, verbose=False)
    x_adv = atk.generate(x, y)
    assert len(calls) == (2 + 1) * 3 and np.abs(x_adv - x).max() <= 0.1 + 1e-6
    with pytest.raises(ValueError, match="eot_samples"):
        EOTPyTorchClassifier(model=model, loss=torch.nn.CrossEntropyLoss(), input_shape=SHAPE, nb_classes=CLASSES,
                             eot_samples=0)


def test_adaptive_fit_saves_and_loads_the_fr_it_ran_through(tmp_path):
    """fit_adaptive writes restorer.pt only when the FR was trained jointly (and removes an earlier joint fit's), and
    load_adaptive_fit (the CLI's and the benchmarks' loader) returns that FR, else the Algorithm-2 FR it is given."""
    from art_idfr.experiments.evaluation import fit_idfr
    from art_idfr.experiments.evaluation.pipeline import fit_adaptive, load_adaptive_fit
    from art_idfr.experiments.evaluation.resume import weights_digest
    from art_idfr.experiments.models import make_model

    data = _synthetic(n_train=60, n_test=12)
    target = make_model("small_cnn", CLASSES, SHAPE, width=0.25, seed=0)

    def cfg(joint):
        return EvalConfig.preset("tiny", width=0.25, fit_n=30, id_epochs=1, fr_epochs=1, idfr_attacks=("fgsm",),
                                 idfr_eps=(0.1,), adaptive_max_iter=1, adaptive_nb_epochs=1, adaptive_fit_n=20,
                                 adaptive_train_restorer=joint, device="cpu").resolved(1)

    den, fr, _ = fit_idfr(cfg(True), data, target, str(tmp_path / "idfr"), verbose=False)
    folder, a2 = str(tmp_path / "idfr" / "adaptive"), weights_digest(fr.network)
    _, joint_fr, _ = fit_adaptive(cfg(True), data, target, den, fr, folder, verbose=False)
    # a copy, saved beside the ID (here the best epoch is the start, so its weights may equal the Algorithm-2 FR's)
    assert joint_fr is not fr and weights_digest(fr.network) == a2
    assert os.path.isfile(os.path.join(folder, "restorer.pt"))
    loaded_den, loaded_fr, meta = load_adaptive_fit(folder, fr, device_type="cpu")
    assert loaded_fr is not fr and weights_digest(loaded_fr.network) == weights_digest(joint_fr.network)  # the file's
    assert meta["settings"]["adaptive_train_restorer"] is True
    _, frozen_fr, _ = fit_adaptive(cfg(False), data, target, den, fr, folder, verbose=False)  # settings differ: refit
    assert frozen_fr is fr and not os.path.exists(os.path.join(folder, "restorer.pt"))
    assert load_adaptive_fit(folder, fr, device_type="cpu")[1] is fr
    with pytest.raises(FileNotFoundError, match="not an adaptive fit"):
        load_adaptive_fit(str(tmp_path), fr, device_type="cpu")


def _staged_adaptive_config(**overrides) -> EvalConfig:
    """A tiny resolved config with one warm restart after a one-epoch adaptive fit (grey-scale), plus ``overrides``."""
    return EvalConfig.preset("tiny", **{
        "width": 0.25, "fit_n": 30, "id_epochs": 1, "fr_epochs": 1, "idfr_attacks": ("fgsm",), "idfr_eps": (0.1,),
        "adaptive_max_iter": 1, "adaptive_nb_epochs": 1, "adaptive_fit_n": 20, "adaptive_fixed_weight": 0.0,
        "adaptive_restarts": (1,), "device": "cpu", **overrides}).resolved(1)


def test_adaptive_warm_restarts_are_cached_stages(tmp_path):
    """adaptive_restarts=(1,): the first run is cached in adaptive/stage0 and the restart, starting from its weights,
    in adaptive/; the record names both, and a rerun with the same settings refits nothing."""
    from art_idfr.experiments.evaluation import fit_idfr
    from art_idfr.experiments.evaluation.pipeline import fit_adaptive
    from art_idfr.experiments.evaluation.resume import weights_digest
    from art_idfr.experiments.models import make_model

    data = _synthetic(n_train=60, n_test=12)
    target = make_model("small_cnn", CLASSES, SHAPE, width=0.25, seed=0)
    cfg = _staged_adaptive_config(adaptive_train_restorer=True)
    den, fr, _ = fit_idfr(cfg, data, target, str(tmp_path / "idfr"), verbose=False)
    folder = str(tmp_path / "idfr" / "adaptive")
    first, first_fr, first_meta = fit_adaptive(cfg.replace(adaptive_restarts=()), data, target, den, fr,
                                               os.path.join(folder, "stage0"), verbose=False)
    den_r, fr_r, meta = fit_adaptive(cfg, data, target, den, fr, folder, verbose=False)  # stage 0 reused from disk
    assert meta["settings"]["adaptive_restarts"] == [1] and [s["nb_epochs"] for s in meta["stages"]] == [1, 1]
    assert meta["stage_meta"]["settings"]["start"] == weights_digest(first.network)  # it continued from stage 0
    assert meta["training"]["init"]["algorithm"] == "adaptive"  # the checkpoint's chain says so too
    assert len(meta["history"]) == len(first_meta["history"]) + len(meta["stage_meta"]["history"])
    with open(os.path.join(folder, "adaptive.json")) as f:
        assert json.load(f)["settings"]["adaptive_restarts"] == [1]
    mtime = os.path.getmtime(os.path.join(folder, "denoiser.pt"))
    again, _, _ = fit_adaptive(cfg, data, target, den, fr, folder, verbose=False)
    assert os.path.getmtime(os.path.join(folder, "denoiser.pt")) == mtime  # cached: not refitted
    assert weights_digest(again.network) == weights_digest(den_r.network)


def test_adaptive_curriculum_trains_each_stage_at_its_budget(tmp_path):
    """adaptive_curriculum_eps=(0.05,) with one restart: the first run trains at 0.05 and the restart at adaptive_eps;
    the checkpoint's chain and the record say so, and the curriculum's first stage is not the plain run's cache."""
    from art_idfr.experiments.evaluation import fit_idfr
    from art_idfr.experiments.evaluation.pipeline import fit_adaptive
    from art_idfr.experiments.models import make_model

    data = _synthetic(n_train=60, n_test=12)
    target = make_model("small_cnn", CLASSES, SHAPE, width=0.25, seed=0)
    cfg = _staged_adaptive_config(adaptive_eps=0.2, adaptive_curriculum_eps="0.05")
    den, fr, _ = fit_idfr(cfg, data, target, str(tmp_path / "idfr"), verbose=False)
    folder = str(tmp_path / "adaptive")
    plain = fit_adaptive(cfg.replace(adaptive_restarts=(), adaptive_curriculum_eps=()), data, target, den, fr,
                         os.path.join(folder, "stage0"), verbose=False)[2]
    assert plain["training"]["eps"] == 0.2
    den_c, _, meta = fit_adaptive(cfg, data, target, den, fr, folder, verbose=False)
    assert [s["eps"] for s in meta["stages"]] == [0.05, 0.2]
    assert meta["settings"]["adaptive_curriculum_eps"] == [0.05]
    chain = den_c.training_info
    assert (chain["algorithm"], chain["eps"]) == ("adaptive", 0.2)
    assert (chain["init"]["algorithm"], chain["init"]["eps"]) == ("adaptive", 0.05)  # stage 0 was refitted at 0.05
    assert (chain["init"]["keep_start"], chain["keep_start"]) == (False, True)  # only the curriculum stage hands on
    with open(os.path.join(folder, "stage0", "adaptive.json")) as f:
        assert json.load(f)["settings"]["adaptive_eps"] == 0.05


def test_a_cut_adaptive_fit_resumes_from_its_folder(tmp_path, monkeypatch):
    """An adaptive fit cut off after its first epoch leaves a resume file in its folder; the rerun does only the
    second epoch, ends at the weights of an uncut fit, counts both parts' seconds and removes the file."""
    from art_idfr.experiments.evaluation import fit_idfr
    from art_idfr.experiments.evaluation.pipeline import ADAPTIVE_RESUME, fit_adaptive
    from art_idfr.experiments.evaluation.resume import weights_digest
    from art_idfr.experiments.models import make_model
    from art_idfr.training import adaptive
    from conftest import counted

    data = _synthetic(n_train=60, n_test=12)
    target = make_model("small_cnn", CLASSES, SHAPE, width=0.25, seed=0)
    cfg = _staged_adaptive_config(adaptive_restarts=(), adaptive_nb_epochs=2)  # one step per epoch
    den, fr, _ = fit_idfr(cfg, data, target, str(tmp_path / "idfr"), verbose=False)
    uncut = fit_adaptive(cfg, data, target, den, fr, str(tmp_path / "uncut"), verbose=False)[0]
    steps, loss = [], adaptive._AdaptiveRun.batch_loss
    monkeypatch.setattr(adaptive._AdaptiveRun, "batch_loss", counted(loss, steps, cut_after=1))
    folder = str(tmp_path / "adaptive")
    with pytest.raises(KeyboardInterrupt):
        fit_adaptive(cfg, data, target, den, fr, folder, verbose=False)
    assert len([f for f in os.listdir(folder) if f.startswith(ADAPTIVE_RESUME)]) == 1
    steps.clear()
    monkeypatch.setattr(adaptive._AdaptiveRun, "batch_loss", counted(loss, steps))
    resumed, _, meta = fit_adaptive(cfg, data, target, den, fr, folder, verbose=False)
    assert len(steps) == 1 and meta["resumed_seconds"] > 0
    assert weights_digest(resumed.network) == weights_digest(uncut.network)
    assert not [f for f in os.listdir(folder) if f.startswith(ADAPTIVE_RESUME)]
