"""
Tests of the ``art-idfr`` command line: help texts (subprocess), a tiny end-to-end ``demo`` run writing the reports,
the train-target -> fit -> evaluate chain with resume, and the error messages for bad names, budgets and data paths.
"""
import json
import os
import shutil
import subprocess
import sys

import pytest

from art_idfr.experiments.cli import build_parser, main

SUBCOMMANDS = ("train-target", "fit", "evaluate", "demo")


def _cli() -> list:
    exe = shutil.which("art-idfr")
    if exe and os.path.dirname(exe) == os.path.dirname(sys.executable):
        return [exe]
    return [sys.executable, "-m", "art_idfr.experiments.cli"]


def _run(args, timeout=120) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return subprocess.run(_cli() + list(args), capture_output=True, text=True, timeout=timeout, env=env)


@pytest.fixture(autouse=True)
def _restore_threads():
    """main() limits torch / BLAS threads and flushes denormals for the process; put torch's settings back after
    each in-process call."""
    import torch

    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)
    torch.set_flush_denormal(False)


def test_parser_loads_neither_torch_nor_art():
    """--help and argument errors answer in a fraction of a second: building the parser imports no torch / ART, and
    the name registries it uses are the ones the models, attacks and denoiser check against."""
    code = ("import sys, art_idfr.experiments.cli as c; c.build_parser(); import art_idfr, art_idfr.experiments.evaluation; "
            "print(sorted(m for m in ('torch', 'art', 'torchvision') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == "[]", proc.stdout + proc.stderr
    import art_idfr
    from art_idfr import _names, denoiser
    from art_idfr.experiments import attacks, choices, models

    assert (models.MODEL_NAMES, attacks.ATTACK_NAMES, denoiser.LOSSES, choices.RESIDUAL_HEADS) == (
        _names.MODEL_NAMES, _names.ATTACK_NAMES, _names.ID_LOSSES, _names.RESIDUAL_HEADS)
    assert set(art_idfr.__all__) == set(art_idfr._EXPORTS) | {"__version__"}
    import art_idfr.experiments.evaluation as ev

    for mod in (art_idfr, ev):
        for name in mod.__all__:  # every lazy export resolves
            assert getattr(mod, name) is not None, (mod.__name__, name)
    assert set(ev._EXPORTS) <= set(ev.__all__)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        art_idfr.nope  # noqa: B018


def test_help_via_subprocess():
    # one process per --help (each a fraction of a second: the parser imports no torch / ART)
    outs = []
    for args in [["--help"]] + [[cmd, "--help"] for cmd in SUBCOMMANDS]:
        proc = _run(args)
        outs.append((proc.stdout, proc.stderr, proc.returncode))
    main_out, _, rc = outs[0]
    assert rc == 0
    for cmd in SUBCOMMANDS:
        assert cmd in main_out
    for cmd, (out, err, rc) in zip(SUBCOMMANDS, outs[1:]):
        assert rc == 0, err
        assert f"usage: art-idfr {cmd}" in out
        for common in ("--preset", "--device", "--out", "--seed", "--dataset", "--model"):
            assert common in out, (cmd, common)
    demo_help = outs[SUBCOMMANDS.index("demo") + 1][0]
    for knob in ("--eval-n", "--whitebox-n", "--query-n", "--eps", "--defences", "--threat-models", "--attacks"):
        assert knob in demo_help
    assert "--resume" in outs[1][0] or "--no-resume" in outs[1][0]


def test_demo_tiny_end_to_end(tmp_path):
    out = tmp_path / "demo"
    proc = _run(["demo", "--preset", "tiny", "--out", str(out), "--quiet", "--seed", "0", "--eps", "8/255,0.3",
                 "--attack-batch-size", "16"], timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for tm in ("black-box", "gray-box", "white-box", "query"):
        assert f"### Threat model: {tm}" in proc.stdout
    assert "| ID+FR |" in proc.stdout and "Sanity checks" in proc.stdout
    for name in ("results.json", "results.csv", "results.md", "accuracy_vs_eps.png"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    for sub in ("target", "surrogate", "idfr", "fast_at"):
        assert (out / sub).is_dir()
    assert (out / "idfr" / "denoiser.pt").is_file() and (out / "idfr" / "restorer.pt").is_file()
    doc = json.loads((out / "results.json").read_text())
    assert doc["metadata"]["command"].startswith("art-idfr demo --preset tiny")
    assert doc["metadata"]["preset"] == "tiny"
    assert doc["config"]["attack_batch_size"] == 16
    assert {r["threat_model"] for r in doc["records"]} == {"black-box", "gray-box", "white-box", "query"}
    assert doc["sanity_checks"]["checks"]["undefended_whitebox_large_eps"]["status"] == "PASS"
    # target / surrogate weights are plain state dicts, loadable with weights_only=True
    import torch

    state = torch.load(out / "target" / "model.pt", weights_only=True)
    assert isinstance(state, dict) and all(isinstance(v, torch.Tensor) for v in state.values())


def test_train_fit_evaluate_chain(tmp_path, capsys):
    target = str(tmp_path / "target")
    common = ["--preset", "tiny", "--quiet", "--threads", "1"]
    assert main(["train-target", "--out", target, "--epochs", "2"] + common) == 0
    first = capsys.readouterr().out
    assert "test" in first and os.path.isfile(os.path.join(target, "model.pt"))
    assert os.listdir(os.path.join(target, "checkpoints"))
    # resume: a finished run is not retrained, and gives the same model
    assert main(["train-target", "--out", target, "--epochs", "2"] + common) == 0
    assert capsys.readouterr().out.splitlines()[-2] == first.splitlines()[-2]
    # an extra AE source, the second of the list: its own seed (seed + 3000 + 1000) and width
    src = str(tmp_path / "source")
    assert main(["train-target", "--role", "idfr_source", "--idfr-source-model", "small_cnn,small_cnn",
                 "--idfr-source-width", "0.25,0.5", "--source-index", "1", "--epochs", "1", "--out", src] + common) == 0
    src_meta = json.loads(open(os.path.join(src, "model.json")).read())
    assert (src_meta["seed"], src_meta["width"], src_meta["epochs"], src_meta["source_index"]) == (4000, 0.5, 1, 1)
    assert "seed 4000" in capsys.readouterr().out

    idfr = str(tmp_path / "idfr")
    assert main(["fit", "--target", target, "--out", idfr, "--id-epochs", "1", "--fr-epochs", "1",
                 "--id-identity-weight", "5", "--id-loss", "both"] + common) == 0
    assert {"denoiser.pt", "restorer.pt", "idfr.json"} <= set(os.listdir(idfr))
    from art_idfr import IDFRDenoiser

    den = IDFRDenoiser.load(os.path.join(idfr, "denoiser.pt"))
    assert den.identity_weight == 5.0 and den.loss == "both" and den.clean_weight == 1.0
    settings = json.loads(open(os.path.join(idfr, "idfr.json")).read())["settings"]
    assert settings["id_identity_weight"] == 5.0
    capsys.readouterr()

    out = str(tmp_path / "eval")
    args = ["evaluate", "--target", target, "--idfr", idfr, "--out", out, "--defences", "none,ID,ID+FR,jpeg75",
            "--threat-models", "gray-box,white-box", "--eps", "8/255,0.3", "--attacks", "fgsm,bim"] + common
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "### Threat model: gray-box" in text and "### Threat model: white-box" in text
    assert "black-box" not in text.split("# IDFR evaluation")[1].split("### Sanity")[0]
    doc = json.loads(open(os.path.join(out, "results.json")).read())
    assert {r["defence"] for r in doc["records"]} == {"none", "ID", "ID+FR", "JPEG q=75"}
    assert {r["eps_label"] for r in doc["records"]} == {"clean", "8/255", "0.3"}
    # the recorded command is the one main() ran (not the test runner's sys.argv)
    assert doc["metadata"]["command"] == "art-idfr " + " ".join(args)

    # the adaptive ID (not in the paper): `fit --adaptive` writes <idfr>/adaptive, `evaluate` finds it
    assert main(["fit", "--target", target, "--out", idfr, "--id-epochs", "1", "--fr-epochs", "1",
                 "--id-identity-weight", "5", "--id-loss", "both", "--adaptive", "--adaptive-nb-epochs", "1",
                 "--adaptive-max-iter", "2", "--adaptive-batch-size", "7"] + common) == 0
    assert "adaptive ID (not in the paper) fitted" in capsys.readouterr().out
    adaptive = IDFRDenoiser.load(os.path.join(idfr, "adaptive", "denoiser.pt"))
    assert adaptive.training_info["algorithm"] == "adaptive" and adaptive.training_info["max_iter"] == 2
    assert adaptive.training_info["batch_size"] == 7
    out_a = str(tmp_path / "eval_adaptive")
    assert main(["evaluate", "--target", target, "--idfr", idfr, "--out", out_a, "--defences", "none,adaptive",
                 "--threat-models", "white-box", "--eps", "0.3", "--attacks", "bim"] + common) == 0
    doc_a = json.loads(open(os.path.join(out_a, "results.json")).read())
    assert {r["defence_key"] for r in doc_a["records"]} == {"none", "idfr_adaptive"}
    assert "gradient_free_not_stronger" in doc_a["sanity_checks"]["checks"]
    import shutil

    plain = str(tmp_path / "idfr_plain")  # an IDFR folder without an adaptive fit
    shutil.copytree(idfr, plain, ignore=shutil.ignore_patterns("adaptive"))
    with pytest.raises(SystemExit):  # asked for explicitly: a clear error
        main(["evaluate", "--target", target, "--idfr", plain, "--out", out_a, "--defences", "adaptive"] + common)
    assert "art-idfr fit --adaptive" in capsys.readouterr().err

    # same seed -> same numbers on CPU, fit included: a second fit and evaluation into fresh folders
    import torch

    idfr2, out2 = str(tmp_path / "idfr2"), str(tmp_path / "eval2")
    assert main(["fit", "--target", target, "--out", idfr2, "--id-epochs", "1", "--fr-epochs", "1",
                 "--id-identity-weight", "5", "--id-loss", "both"] + common) == 0
    for name in ("denoiser.pt", "restorer.pt"):
        a, b = (torch.load(os.path.join(d, name), weights_only=True)["state_dict"] for d in (idfr, idfr2))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
    assert main([*args[:4], idfr2, "--out", out2, *args[7:]]) == 0
    doc2 = json.loads(open(os.path.join(out2, "results.json")).read())
    key = ("threat_model", "defence", "attack", "eps", "accuracy", "n_correct")
    assert [tuple(r[k] for k in key) for r in doc2["records"]] == [tuple(r[k] for k in key) for r in doc["records"]]


def test_a_later_none_clears_the_warm_restarts():
    """``--adaptive-restarts none`` (a benchmark built on another's flags drops its warm restarts) is the default;
    a list is kept."""
    parse = build_parser().parse_args
    assert parse(["demo", "--adaptive-restarts", "1,2", "--adaptive-restarts", "none"]).adaptive_restarts == ()
    assert parse(["demo", "--adaptive-restarts", "1,2"]).adaptive_restarts == (1, 2)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["demo", "--dataset", "imagenet21k"], "unknown dataset 'imagenet21k'; valid datasets: .*mnist5k"),
        (["demo", "--model", "vit"], "unknown model 'vit'; valid models: small_cnn"),
        (["demo", "--attacks", "fgsm,deepfool"], "Unknown attack 'deepfool'. Valid attacks: fgsm, cw, bim"),
        (["demo", "--defences", "none,magic"], "Unknown defence 'magic'. Valid defences: none, id, idfr"),
        (["demo", "--threat-models", "grey-ish"], "Unknown threat model 'grey-ish'"),
        (["demo", "--preset", "huge"], "unknown preset 'huge'; valid presets: cpu, paper, tiny"),
        (["demo", "--device", "tpu"], "unknown device 'tpu'; valid devices: auto, cpu, cuda"),
        (["demo", "--eps", "0"], r"outside \(0, 1\]"),
        (["demo", "--eps", "8/255,8"], r"outside \(0, 1\].*write 8/255"),
        (["demo", "--eps", "1.5"], r"outside \(0, 1\]"),
        (["demo", "--eps", "-0.1"], r"outside \(0, 1\]"),
        (["demo", "--eps", "abc"], "cannot parse epsilon 'abc'"),
        (["demo", "--fast-at-eps", "2"], r"outside \(0, 1\]"),
        (["demo", "--eval-n", "0"], "expected a positive integer"),
        (["train-target", "--role", "attacker"], "invalid choice: 'attacker'"),
        (["demo", "--idfr-source-model", "vit"], "unknown model 'vit'; valid models: small_cnn"),
        (["demo", "--idfr-source-model", "small_cnn,vit"], "unknown model 'vit'; valid models: small_cnn"),
        (["demo", "--idfr-source-width", "0.5,-1"], "expected a positive number, got '-1'"),
        (["train-target", "--role", "idfr_source"], "--role idfr_source needs --idfr-source-model"),
        (["train-target", "--source-index", "1"], "--source-index is only for --role idfr_source"),
        (["train-target", "--role", "idfr_source", "--idfr-source-model", "small_cnn", "--source-index", "1"],
         "--source-index 1 is out of range"),
        (["fit"], "the following arguments are required: --target"),
        (["demo", "--id-augment", "flip"], "invalid choice: 'flip'"),
        (["demo", "--model", "resnet50"], "'resnet50' is torchvision's architecture at its fixed width.*--width 1"),
        (["demo", "--surrogate-model", "inception_v3", "--width", "1", "--surrogate-width", "0.25"],
         "surrogate_model 'inception_v3'.*--surrogate-width 1"),
        (["demo", "--target-epochs", "0"], r"`target_epochs` 0 means the target's weights as they are: give the "
                                           r"weights file \(--weights PATH\)"),
        (["demo", "--surrogate-epochs", "0"], r"give the weights file \(--surrogate-weights PATH\)"),
        (["demo", "--weights", "/nonexistent/w.pth"], r"target weights file '/nonexistent/w.pth' \(--weights\) not found"),
        (["demo", "--image-size", "0"], "expected a positive integer"),
        (["train-target", "--epochs", "-1"], "expected a non-negative integer"),
        (["demo", "--adaptive-restarts", "0"], "expected a positive integer, got '0'"),
        (["demo", "--adaptive-restarts", "1,none"], "expected a positive integer, got 'none'"),
    ],
)
def test_argument_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    import re

    assert re.search(message, capsys.readouterr().err), message


def test_data_and_path_errors(tmp_path, capsys):
    def fails(argv, message):
        with pytest.raises(SystemExit) as exc:
            main(argv + ["--quiet", "--threads", "1"])
        assert exc.value.code == 2
        err = capsys.readouterr().err
        assert message in err, err
        assert "Traceback" not in err

    missing = str(tmp_path / "nowhere")
    fails(["train-target", "--dataset", "imagefolder", "--data-root", missing, "--out", str(tmp_path / "a")],
          "does not exist")
    empty = tmp_path / "flat"
    (empty / "cats").mkdir(parents=True)
    from PIL import Image

    Image.new("L", (8, 8)).save(empty / "cats" / "a.png")
    fails(["train-target", "--dataset", "imagefolder", "--data-root", str(empty), "--out", str(tmp_path / "b")],
          "train/ and test/")
    fails(["fit", "--target", missing], "not a model folder")
    fails(["evaluate", "--target", missing], "not a model folder")
    fails(["demo", "--eval-n", "10", "--whitebox-n", "20"], "subsets of the evaluation images")


def test_no_command_prints_help(capsys):
    assert main([]) == 2
    assert "usage: art-idfr" in capsys.readouterr().out
    parser = build_parser()
    assert set(SUBCOMMANDS) <= set(parser._subparsers._group_actions[0].choices)


def test_idfr_source_flags_reach_the_config():
    from art_idfr.experiments.cli import _config, build_parser

    args = build_parser().parse_args(["demo", "--idfr-source-model", "VGG16_BN_CIFAR", "--idfr-source-width", "0.25",
                                      "--idfr-source-epochs", "2"])
    cfg = _config(args)
    assert (cfg.idfr_source_model, cfg.idfr_source_width, cfg.idfr_source_epochs) == (("vgg16_bn_cifar",), (0.25,), 2)
    args = build_parser().parse_args(["demo", "--idfr-source-model", "vgg16_bn_cifar,resnet18_cifar",
                                      "--idfr-source-width", "0.25,0.5"])
    cfg = _config(args)
    assert (cfg.idfr_source_model, cfg.idfr_source_width) == (("vgg16_bn_cifar", "resnet18_cifar"), (0.25, 0.5))
    assert _config(build_parser().parse_args(["demo"])).idfr_source_model is None  # the paper: target only


def test_fit_and_evaluate_under_torchrun(tmp_path, capsys):
    """
    `torchrun --nproc_per_node=2 -m art_idfr.experiments.cli fit --adaptive` (ID, FR and adaptive ID under DDP, Gloo)
    and `... evaluate` (the surrogate trained by rank 0, every cell sharded): one report, written and printed by rank 0,
    with the records of the same evaluation in one process.
    """
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE"):
        env.pop(var, None)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                "-m", "art_idfr.experiments.cli"]
    common = ["--preset", "tiny", "--quiet", "--threads", "1", "--dist-timeout", "120"]
    target, idfr, out = (str(tmp_path / d) for d in ("target", "idfr", "eval"))
    assert main(["train-target", "--out", target, "--epochs", "1", "--train-size", "400", "--val-n", "30"] + common) == 0
    capsys.readouterr()

    fit = ["fit", "--target", target, "--out", idfr, "--fit-n", "40", "--adaptive", "--adaptive-fit-n", "30",
           "--adaptive-max-iter", "1"] + common
    proc = subprocess.run(torchrun + fit, capture_output=True, text=True, timeout=240, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("IDFR fitted") == 1 and proc.stdout.count("adaptive ID (not in the paper)") == 1
    assert {"denoiser.pt", "restorer.pt", "idfr.json", "adaptive"} <= set(os.listdir(idfr))
    history = json.loads(open(os.path.join(idfr, "adaptive", "adaptive.json")).read())["history"]
    assert [h["n_seen"] for h in history if "n_seen" in h] == [30]  # both ranks together: each image once

    evaluate = ["evaluate", "--target", target, "--idfr", idfr, "--defences", "none,adaptive",
                "--threat-models", "black-box,white-box", "--attacks", "fgsm,pgd", "--eps", "0.3", "--eval-n", "10",
                "--whitebox-n", "6", "--attack-batch-size", "4", "--surrogate-epochs", "1"] + common
    proc = subprocess.run(torchrun + evaluate + ["--out", out], capture_output=True, text=True, timeout=240,
                          env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("### Threat model: white-box") == 1  # rank 0 alone prints the report
    assert os.path.isfile(os.path.join(out, "surrogate", "model.pt"))  # trained once, by rank 0
    doc = json.loads(open(os.path.join(out, "results.json")).read())
    assert doc["metadata"]["processes"] == 2 and "· 2 processes (torchrun" in open(os.path.join(out, "results.md")).read()
    # the same evaluation in one process, with the surrogate rank 0 trained: the same records
    assert main(evaluate + ["--out", str(tmp_path / "single"), "--surrogate", os.path.join(out, "surrogate")]) == 0
    single = json.loads(open(tmp_path / "single" / "results.json").read())
    assert "processes" not in single["metadata"]
    key = ("threat_model", "defence_key", "attack", "eps", "n", "n_correct", "accuracy", "source_accuracy")
    assert [[r[k] for k in key] for r in doc["records"]] == [[r[k] for k in key] for r in single["records"]]
    assert {r["defence_key"] for r in doc["records"]} == {"none", "idfr_adaptive"}


# ---- the thread choice and the demo's scale ----------------------------------------------------------------------------


def _fake_cpu(monkeypatch, cores: int, busy_cores: float, loadavg: float = 0.0):
    """``cores`` CPUs of which ``busy_cores`` are kept busy by other processes *now*, and a 1-minute load average of
    ``loadavg`` (what a job that just ended leaves behind); returns the list of /proc/stat reads made."""
    from art_idfr.experiments import cli

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cores)))
    monkeypatch.setattr(os, "getloadavg", lambda: (loadavg, loadavg, loadavg))
    monkeypatch.setattr(cli, "IDLE_SAMPLE_S", 0.0)
    reads = []

    def cpu_times(cpus):  # jiffies: 100 per core between two reads, busy_cores of them busy
        reads.append(sorted(cpus))
        k = len(reads) - 1
        return k * 100.0 * (len(cpus) - busy_cores), k * 100.0 * len(cpus)

    monkeypatch.setattr(cli, "_cpu_times", cpu_times)
    return reads


def test_threads_use_idle_cores_not_the_load_average(monkeypatch):
    """Right after `pip install` the 1-minute load average still reads ~2 on an idle 2-core machine: the demo must
    take both cores (the load average made it pick one and run 1,284 s), and one beside a job still running."""
    from art_idfr.experiments.cli import _default_threads, _thread_choice

    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    reads = _fake_cpu(monkeypatch, cores=2, busy_cores=0.0, loadavg=2.0)
    assert _default_threads() == 2 and reads == [[0, 1], [0, 1]]
    assert _thread_choice()[1] == "2 cores, 2.0 idle now"
    _fake_cpu(monkeypatch, cores=2, busy_cores=1.0, loadavg=0.0)  # a job running now on one core
    assert _default_threads() == 1
    _fake_cpu(monkeypatch, cores=2, busy_cores=0.3)  # a blip: still both
    assert _default_threads() == 2
    _fake_cpu(monkeypatch, cores=4, busy_cores=0.0, loadavg=4.0)
    assert _default_threads() == 4
    reads = _fake_cpu(monkeypatch, cores=16, busy_cores=0.0)  # many cores: half of them, at most 4, no sampling
    assert _default_threads() == 4 and reads == []
    _fake_cpu(monkeypatch, cores=6, busy_cores=0.0)
    assert _default_threads() == 3


def test_threads_under_torchrun_share_the_cores(monkeypatch):
    """torchrun's LOCAL_WORLD_SIZE processes split the cores, without sampling (their siblings' start-up is no
    outside load)."""
    from art_idfr.experiments.cli import _default_threads

    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    reads = _fake_cpu(monkeypatch, cores=2, busy_cores=2.0)
    assert _default_threads() == 1 and reads == []
    _fake_cpu(monkeypatch, cores=4, busy_cores=4.0)
    assert _default_threads() == 2
    _fake_cpu(monkeypatch, cores=16, busy_cores=0.0)
    assert _default_threads() == 2
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "8")
    assert _default_threads() == 1


def test_cpu_times_read_proc_stat(monkeypatch, tmp_path):
    from art_idfr.experiments import cli

    stat = tmp_path / "stat"
    stat.write_text("cpu  50 0 50 300 0 0 0 0 0 0\ncpu0 10 0 10 100 20 0 0 0 0 0\ncpu1 40 0 40 180 0 0 0 0 0 0\n"
                    "intr 12345\n")
    monkeypatch.setattr(cli, "PROC_STAT", str(stat))
    assert cli._cpu_times([0]) == (120.0, 140.0)  # idle + iowait of cpu0 only (the affinity set)
    assert cli._cpu_times([0, 1]) == (300.0, 400.0)
    monkeypatch.setattr(cli, "PROC_STAT", str(tmp_path / "missing"))
    assert cli._cpu_times([0]) is None and cli._idle_cores([0], seconds=0) is None


def test_demo_defaults_to_the_demo_scale_and_full_restores_cpu():
    """`art-idfr demo` runs the small demo preset (the same threat models, checks and adaptive row, fewer images,
    queries and epochs); --full (= --preset cpu) the larger cpu run; the other subcommands keep cpu."""
    from art_idfr.experiments.cli import _config
    from art_idfr.experiments.cli_commands import _scale_line
    from art_idfr.experiments.evaluation.config import EvalConfig

    parse = build_parser().parse_args
    demo, full, cpu = EvalConfig.preset("demo"), EvalConfig.preset("cpu"), EvalConfig()
    assert _config(parse(["demo"])).to_dict() == demo.to_dict()
    assert _config(parse(["demo", "--full"])).to_dict() == _config(parse(["demo", "--preset", "cpu"])).to_dict() \
        == full.to_dict()
    assert {k: v for k, v in full.to_dict().items() if k != "preset_name"} == \
        {k: v for k, v in cpu.to_dict().items() if k != "preset_name"}  # cpu: every dataclass default
    assert parse(["fit", "--target", "t"]).preset == "cpu" and parse(["evaluate", "--target", "t"]).preset == "cpu"
    assert _config(parse(["demo", "--eval-n", "300"])).eval_n == 300  # flags still override the demo's scale
    # smaller ...
    for name in ("eval_n", "whitebox_n", "query_n", "sanity_square_iter", "fit_n", "val_n", "adaptive_fit_n"):
        assert (getattr(demo, name) or 10**9) < (getattr(full, name) or 10**9), name
    assert demo.id.nb_epochs < full.id.nb_epochs and demo.adaptive.nb_epochs < full.adaptive.nb_epochs
    # ... with the same threat models, attacks, budgets, attack strength and the adaptive row
    for name in ("threat_models", "attacks", "eps", "attack_iter", "eps_step", "query_iter", "eot_samples",
                 "sanity_eps", "target", "surrogate", "fast_at", "train"):
        assert getattr(demo, name) == getattr(full, name), name
    assert "idfr_adaptive" in demo.defences and set(demo.defences) < set(full.defences)
    # the demo says what it runs and what --full runs
    line = _scale_line(demo.resolved(1))
    assert f"n = {demo.eval_n} evaluation images" in line and f"Square {demo.sanity_square_iter} queries" in line
    assert "`art-idfr demo --full` runs the larger cpu preset" in line and f"n = {full.eval_n}" in line
    assert "--full" not in _scale_line(full.resolved(1))
