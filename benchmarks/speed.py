"""
Speed benchmark: `predict` throughput of an undefended ResNet-18 (CIFAR variant) target, the ID (Table 6, light, slim),
ID+FR and ART's FeatureSqueezing, JpegCompression, SpatialSmoothing and TotalVarMin on the same images and machine in
one run; the ID's throughput against its compute floor (MACs per image x measured matmul rate); seconds per ID
training epoch; seconds per image of the eps-bounded CW attack vs ART's CarliniLInfMethod; peak memory. At 224x224:
a ResNet-50 (torchvision, 1000 classes) undefended, + Table 6 ID, + light ID and + slim ID (images/s, peak memory
of a fresh process each), and the MACs per image of the IDs at 32x32 and 224x224.

Throughput does not depend on weight values, so the networks here are untrained (stated in the report); the
accuracy side of the comparison is in the dataset benchmarks (fashion_mnist_cpu, cifar10_cpu).

Usage::

    python benchmarks/speed.py                 # CPU, ~5 min on 2 cores
    python benchmarks/speed.py --device cuda   # on a GPU
"""
from __future__ import annotations

import argparse
import concurrent.futures
import multiprocessing
import os
import platform
import resource
import shlex
import sys
import time
from datetime import datetime, timezone

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cw_speed import cpu_model, git_revision, save_report  # noqa: E402

RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "speed")


def best_time(fn, reps: int) -> float:
    """Best wall time of `reps` calls after one warm-up call (best-of, to damp noise from other processes)."""
    fn()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def matmul_gmacs(device: torch.device, n: int = 1024, reps: int = 10) -> float:
    """Measured float32 matmul rate in GMAC/s (n x n x n), the machine's practical compute ceiling."""
    a, b = torch.rand(n, n, device=device), torch.rand(n, n, device=device)

    def run():
        for _ in range(reps):
            a @ b
        if device.type == "cuda":
            torch.cuda.synchronize()

    return reps * n**3 / best_time(run, 3) / 1e9


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def proc_status_mib(field: str) -> float:
    """``VmRSS`` (resident now) or ``VmHWM`` (peak resident) of this process from /proc (Linux; NaN elsewhere).
    Unlike ``ru_maxrss``, which a spawned child inherits from its parent through fork + exec, ``VmHWM`` belongs to
    the process's own address space."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024.0  # kB
    except (OSError, ValueError):  # pragma: no cover - not Linux
        pass
    return float("nan")


#: the defended variants at 224x224: table name -> IDFRDenoiser architecture (None = undefended)
VARIANTS_224 = {"none (ResNet-50)": None, "+ ID (Table 6)": "table6", "+ ID (light)": "light", "+ ID (slim)": "slim"}


def classifier_224(architecture, batch_size: int, device_type: str):
    """An untrained torchvision ResNet-50 (1000 classes) as an ART classifier, defended by an untrained ID or not."""
    import torchvision
    from art.estimators.classification import PyTorchClassifier

    from art_idfr import IDFRDenoiser, defend

    model = torchvision.models.resnet50(weights=None).eval()
    clf = PyTorchClassifier(model, loss=torch.nn.CrossEntropyLoss(), input_shape=(3, 224, 224), nb_classes=1000,
                            clip_values=(0.0, 1.0), device_type=device_type)
    if architecture is None:
        return clf
    den = IDFRDenoiser((3, 224, 224), device_type=device_type, batch_size=batch_size, architecture=architecture)
    den._is_fitted = True  # untrained weights: timing only
    return defend(clf, den)


def memory_224(architecture, n: int, batch_size: int, threads, seed: int, device_type: str) -> dict:
    """
    Run in a fresh process: build the (defended) ResNet-50, predict n random 224x224 images once; its peak RSS and
    the rise of the peak over the RSS before predict (activations and buffers); on a GPU the peak CUDA allocation.
    """
    if threads:
        from art_idfr.experiments.evaluation.pipeline import set_up_cpu

        set_up_cpu(threads)
    torch.manual_seed(seed)
    clf = classifier_224(architecture, batch_size, device_type)
    x = np.random.default_rng(seed).random((n, 3, 224, 224), dtype=np.float32)
    before = proc_status_mib("VmRSS")
    if torch.cuda.is_available() and device_type == "gpu":
        torch.cuda.reset_peak_memory_stats()
    clf.predict(x, batch_size=batch_size)
    cuda = torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() and device_type == "gpu" else None
    peak = proc_status_mib("VmHWM")
    return {"peak_rss_mib": peak, "predict_rise_mib": peak - before, "peak_cuda_mib": cuda}


def section_224(args, device_type: str) -> dict:
    """ResNet-50 at 224x224: undefended vs + Table 6 / light / slim ID (round-robin timing, memory per process)."""
    from art_idfr.unet import conv_macs, make_unet

    load_start = os.getloadavg()
    x = np.random.default_rng(args.seed).random((args.n_224, 3, 224, 224), dtype=np.float32)
    clfs = {name: classifier_224(arch, args.batch_size_224, device_type) for name, arch in VARIANTS_224.items()}
    best = {name: float("inf") for name in clfs}
    for clf in clfs.values():  # warm-up
        clf.predict(x, batch_size=args.batch_size_224)
    for _ in range(args.reps_224):  # round-robin, best round kept (as the 32x32 table)
        for name, clf in clfs.items():
            start = time.perf_counter()
            clf.predict(x, batch_size=args.batch_size_224)
            best[name] = min(best[name], time.perf_counter() - start)
    del clfs
    rows, base = [], args.n_224 / best["none (ResNet-50)"]
    spawn = multiprocessing.get_context("spawn")
    for name, arch in VARIANTS_224.items():
        with concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=spawn) as pool:  # a fresh process each
            mem = pool.submit(memory_224, arch, args.n_224, args.batch_size_224, args.threads, args.seed,
                              device_type).result()
        ips = args.n_224 / best[name]
        rows.append({"defence": name, "images": args.n_224, "seconds": best[name], "images_per_s": ips,
                     "vs_undefended": ips / base, **mem})
        print(f"224x224 {name:<20} {ips:7.2f} img/s ({ips / base:.3f}x undefended), peak RSS "
              f"{mem['peak_rss_mib']:.0f} MiB (+{mem['predict_rise_mib']:.0f} in predict)", flush=True)
    import torchvision

    macs = {f"{arch} ID, width 1": {str(s): conv_macs(make_unet(arch, 3), (3, s, s)) for s in (32, 224)}
            for arch in ("table6", "light", "slim")}
    macs["ResNet-50 (torchvision)"] = {"224": conv_macs(torchvision.models.resnet50(weights=None), (3, 224, 224))}
    return {"rows": rows, "macs": macs, "batch_size": args.batch_size_224, "reps": args.reps_224,
            "load_average_start": load_start, "load_average_end": os.getloadavg(),
            "data": f"{args.n_224} uniform random 3x224x224 images (throughput does not depend on content)"}


def id_compute(den, xt: torch.Tensor, gmacs: float, reps: int) -> dict:
    """The ID alone on a batch: images/s against its compute floor (MACs per image x the measured matmul rate)."""
    macs = den.network.macs_per_image(*xt.shape[-2:])
    id_ips = len(xt) / best_time(lambda: den.forward(xt), reps)
    floor_ips = gmacs * 1e9 / macs
    row = {"architecture": den.architecture, "id_macs_per_image": macs, "id_images_per_s": id_ips,
           "matmul_gmacs_per_s": gmacs, "id_floor_images_per_s": floor_ips,
           "id_achieved_gmacs_per_s": id_ips * macs / 1e9, "floor_over_measured": floor_ips / id_ips}
    print(f"ID ({den.architecture}) alone: {id_ips:.1f} img/s, {macs / 1e6:.1f} MMAC/img -> "
          f"{id_ips * macs / 1e9:.1f} GMAC/s; matmul {gmacs:.1f} GMAC/s -> floor {floor_ips:.1f} img/s; "
          f"floor/measured {floor_ips / id_ips:.2f}", flush=True)
    return row


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=512, help="images per predict timing")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--reps", type=int, default=5, help="timed rounds (best is reported)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--tvm-n", type=int, default=16, help="images for TotalVarMin (slow)")
    parser.add_argument("--train-n", type=int, default=512, help="training samples for the ID epoch timing")
    parser.add_argument("--cw-ours", type=int, default=64)
    parser.add_argument("--cw-art", type=int, default=8)
    parser.add_argument("--n-224", type=int, default=16, help="images per predict timing at 224x224")
    parser.add_argument("--batch-size-224", type=int, default=16)
    parser.add_argument("--reps-224", type=int, default=3, help="timed rounds at 224x224 (best is reported)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch + BLAS threads (default: torch's)")
    parser.add_argument("--out-dir", default=RESULTS_DIR)
    return parser.parse_args(argv)


def load_images(args):
    """``(x, x_train, y_train, description)``: CIFAR-10 JPEG when the tarball is there, uniform noise otherwise."""
    from art_idfr.experiments.data import DEFAULT_CIFAR10_JPEG, load_dataset

    if os.path.exists(DEFAULT_CIFAR10_JPEG):
        ds = load_dataset("cifar10_jpeg", test_size=args.n, train_size=args.train_n, seed=args.seed)
        return ds.x_test, ds.x_train, ds.y_train, "CIFAR-10 (JPEG q75 copy)"
    rng = np.random.default_rng(args.seed)  # pragma: no cover - users without the tarball
    x = rng.random((args.n, 3, 32, 32), dtype=np.float32)
    x_train, y_train = rng.random((args.train_n, 3, 32, 32), dtype=np.float32), rng.integers(0, 10, args.train_n)
    return x, x_train, y_train, "uniform random 3x32x32 images"


def fitted_untrained(module):
    """Mark an untrained ID / FR as fitted: throughput does not depend on weight values."""
    module._is_fitted = True
    return module


def predict_variants(args, model, device_type: str, dens: dict, fr) -> list:
    """``(name, classifier, images)``: the undefended ResNet-18, + each ID, + ID+FR and ART's preprocessors."""
    from art.defences.preprocessor import FeatureSqueezing, JpegCompression, SpatialSmoothing
    from art.estimators.classification import PyTorchClassifier

    from art_idfr import defend
    from art_idfr.experiments.evaluation.config import EvalConfig
    from art_idfr.experiments.evaluation.defences import ChannelsFirstTotalVarMin

    def classifier(defences=None):
        return PyTorchClassifier(model, loss=torch.nn.CrossEntropyLoss(), input_shape=(3, 32, 32), nb_classes=10,
                                 clip_values=(0.0, 1.0), preprocessing_defences=defences, device_type=device_type)

    target = classifier()
    cfg = EvalConfig()  # the baselines' settings of the accuracy tables
    tvm = ChannelsFirstTotalVarMin(prob=cfg.tvm_prob, lamb=cfg.tvm_lamb, max_iter=cfg.tvm_max_iter, clip_values=(0.0, 1.0),
                                   channels_first=True, verbose=False)
    return [
        ("none (ResNet-18)", target, args.n),
        ("ID", defend(target, dens["table6"]), args.n),
        ("ID+FR", defend(target, dens["table6"], fr), args.n),
        ("ID (light)", defend(target, dens["light"]), args.n),
        ("ID (slim)", defend(target, dens["slim"]), args.n),
        ("FeatureSqueezing (5 bit)", classifier([FeatureSqueezing(clip_values=(0.0, 1.0), bit_depth=5)]), args.n),
        ("JpegCompression (q=75)", classifier([JpegCompression(clip_values=(0.0, 1.0), quality=75)]), args.n),
        ("SpatialSmoothing (3x3)", classifier([SpatialSmoothing(window_size=3)]), args.n),
        ("TotalVarMin (as evaluated)", classifier([tvm]), args.tvm_n),
    ]


def predict_table(variants, x, batch_size: int, reps: int) -> list:
    """Round-robin timing (every variant once per round, best round kept), so that load from other processes on the
    machine hits all variants alike instead of whichever happened to run during a busy spell."""
    best = {name: float("inf") for name, _, _ in variants}
    for _, clf, n in variants:  # warm-up
        clf.predict(x[:n], batch_size=batch_size)
    for _ in range(reps):
        for name, clf, n in variants:
            start = time.perf_counter()
            clf.predict(x[:n], batch_size=batch_size)
            best[name] = min(best[name], time.perf_counter() - start)
    rows, base = [], variants[0][2] / best[variants[0][0]]
    for name, _, n in variants:
        ips = n / best[name]
        rows.append({"defence": name, "images": n, "seconds": best[name], "images_per_s": ips,
                     "vs_undefended": ips / base})
        print(f"{name:<28} {ips:9.1f} img/s  ({ips / base:.3f}x undefended)", flush=True)
    return rows


def id_training_epoch(target, x_train, y_train, device_type: str) -> dict:
    """One ID training epoch (FGSM AEs precomputed, 1 Gaussian round): seconds per 1k training samples."""
    from art.attacks.evasion import FastGradientMethod

    from art_idfr import IDFRDenoiser

    x_adv = FastGradientMethod(target, eps=8 / 255).generate(x_train)
    train_den = IDFRDenoiser((3, 32, 32), device_type=device_type, nb_epochs=1, batch_size=128)
    samples = len(x_train) * (2 + train_den.gaussian_rounds)  # AEs + clean + Gaussian copies
    start = time.perf_counter()
    train_den.fit(x_train, y_train, classifier=target, x_adv=x_adv)
    train_s = time.perf_counter() - start
    row = {"samples": samples, "seconds": train_s, "seconds_per_1k_samples": 1000 * train_s / samples,
           "cifar10_epoch_estimate_s": 50000 * 3 * train_s / samples}
    print(f"ID training: {1000 * train_s / samples:.2f} s per 1k samples "
          f"(full CIFAR-10 epoch with 1 attack ~{row['cifar10_epoch_estimate_s'] / 60:.0f} min)", flush=True)
    return row


def cw_timing(args, x, device, device_type: str) -> dict:
    """CW-eps vs ART CarliniLInfMethod, 20 iterations, same model and images. ART's attack needs ~1,400 forward and
    backward passes per image, which is minutes per image for a ResNet-18 on a CPU: a small CNN is used here."""
    from art.attacks.evasion import CarliniLInfMethod
    from art.estimators.classification import PyTorchClassifier

    from art_idfr.experiments.attacks import CarliniWagnerLInfPGD
    from art_idfr.experiments.models import make_model

    cw_model = make_model("small_cnn", num_classes=10, input_shape=(3, 32, 32), width=0.5).to(device).eval()
    cw_target = PyTorchClassifier(cw_model, loss=torch.nn.CrossEntropyLoss(), input_shape=(3, 32, 32), nb_classes=10,
                                  clip_values=(0.0, 1.0), device_type=device_type)
    cw_ours = CarliniWagnerLInfPGD(cw_target, eps=8 / 255, max_iter=20, batch_size=args.batch_size, verbose=False)
    t_ours = best_time(lambda: cw_ours.generate(x[: args.cw_ours]), 1) / args.cw_ours
    cw_art = CarliniLInfMethod(cw_target, max_iter=20, verbose=False)
    start = time.perf_counter()
    cw_art.generate(x[: args.cw_art])
    t_art = (time.perf_counter() - start) / args.cw_art
    print(f"CW: ours {t_ours:.4f} s/img, ART {t_art:.3f} s/img -> {t_art / t_ours:.0f}x", flush=True)
    return {"ours_s_per_image": t_ours, "art_s_per_image": t_art, "speedup": t_art / t_ours,
            "ours_images": args.cw_ours, "art_images": args.cw_art, "max_iter": 20,
            "model": "small_cnn (width 0.5), 3x32x32, untrained"}


def main(argv=None) -> dict:
    args = parse_args(argv)
    load_start = os.getloadavg()
    if args.threads:
        from art_idfr.experiments.evaluation.pipeline import set_up_cpu

        set_up_cpu(args.threads)

    import art

    from art_idfr import FeatureRestorer, IDFRDenoiser
    from art_idfr.experiments.models import make_model

    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    device_type = "gpu" if device.type == "cuda" else "cpu"
    x, x_train, y_train, data_desc = load_images(args)
    model = make_model("resnet18_cifar", num_classes=10, input_shape=(3, 32, 32)).to(device).eval()
    dens = {arch: fitted_untrained(IDFRDenoiser((3, 32, 32), device_type=device_type, batch_size=args.batch_size,
                                                architecture=arch)) for arch in ("table6", "light", "slim")}
    fr = fitted_untrained(FeatureRestorer(embedding_dim=512, device_type=device_type))
    variants = predict_variants(args, model, device_type, dens, fr)
    target = variants[0][1]  # the undefended ResNet-18
    rows = predict_table(variants, x, args.batch_size, args.reps)
    xt = torch.as_tensor(x, device=device)  # the ID alone against its compute floor
    gmacs = matmul_gmacs(device)
    id_row, light_row, slim_row = (id_compute(dens[a], xt, gmacs, args.reps) for a in ("table6", "light", "slim"))
    epoch_row = id_training_epoch(target, x_train, y_train, device_type)
    cw_row = cw_timing(args, x, device, device_type)
    peak_32 = peak_rss_mib()  # before the 224x224 section, which builds ResNet-50s in this process
    at_224 = section_224(args, device_type)
    result = {
        "benchmark": "speed",
        "command": "python " + " ".join(shlex.quote(a) for a in [os.path.relpath(__file__)] + (argv or sys.argv[1:])),
        "date_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "git_revision": git_revision(),
        "device": (torch.cuda.get_device_name(0) if device.type == "cuda"
                   else f"{cpu_model()} ({os.cpu_count()} logical CPUs, torch threads {torch.get_num_threads()})"),
        "load_average_at_start": load_start,
        "load_average_at_end": os.getloadavg(),
        "versions": {"python": platform.python_version(), "torch": torch.__version__, "art": art.__version__},
        "seed": args.seed,
        "data": f"{data_desc}, {args.n} test images for predict; {len(x_train)} train images for the epoch timing",
        "weights": "untrained (throughput does not depend on weight values)",
        "predict": rows, "id_compute": id_row, "id_compute_light": light_row, "id_compute_slim": slim_row,
        "at_224": at_224, "id_training": epoch_row, "cw": cw_row, "peak_rss_mib": peak_32,
        "peak_cuda_mib": torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else None,
    }
    write_reports(result, args.out_dir)
    return result


def write_reports(result: dict, out_dir: str) -> None:
    text = markdown(result)
    save_report(result, text, out_dir, "speed")
    print(text)


def markdown(r: dict) -> str:
    lines = [
        "# Speed: IDFR vs ART preprocessing defences",
        "",
        f"- Command: `{r['command']}`",
        f"- Date (UTC): {r['date_utc']}; git revision: {r['git_revision']}",
        f"- Device: {r['device']}; load average (1, 5, 15 min) at start {_load(r.get('load_average_at_start'))}, at "
        f"end {_load(r['load_average_at_end'])}"
        + ("; **the CPU was shared with other jobs** (load above the core count): absolute rates are low and noisy, "
           "the ratios within one round-robin table are the comparable numbers"
           if max(r.get("load_average_at_start") or (0,)) > (os.cpu_count() or 1) else ""),
        f"- Versions: Python {r['versions']['python']}, torch {r['versions']['torch']}, ART {r['versions']['art']};"
        f" seed {r['seed']}",
        f"- Data: {r['data']}. Weights: {r['weights']}. Best of repeated runs.",
        "",
        "| defence (ResNet-18 target) | images | images / s | × undefended |",
        "|---|---:|---:|---:|",
    ]
    for row in r["predict"]:
        lines.append(f"| {row['defence']} | {row['images']} | {row['images_per_s']:.1f} | {row['vs_undefended']:.3f} |")
    lines += [x for c in (r["id_compute"], r.get("id_compute_light"), r.get("id_compute_slim")) if c
              for x in ("", _floor_line(c))]
    lines += [
        "",
        f"**ID training**: {r['id_training']['seconds_per_1k_samples']:.2f} s per 1,000 training samples "
        f"({r['id_training']['samples']} samples: AEs + clean + Gaussian copies); a full CIFAR-10 epoch with one "
        f"attack (150k samples) ≈ {r['id_training']['cifar10_epoch_estimate_s'] / 60:.0f} min.",
        "",
        f"**CW-ε vs ART CarliniLInfMethod** (20 iterations, same {r['cw']['model']} and images): "
        f"{r['cw']['ours_s_per_image']:.4f} vs {r['cw']['art_s_per_image']:.3f} s per image → "
        f"**{r['cw']['speedup']:.0f}×** faster ({r['cw']['ours_images']} / {r['cw']['art_images']} images).",
        "",
        f"**Peak memory** (this process, 32×32 sections): {r['peak_rss_mib']:.0f} MiB RSS"
        + (f", {r['peak_cuda_mib']:.0f} MiB CUDA" if r["peak_cuda_mib"] else "") + ".",
        "",
    ]
    if r.get("at_224"):
        lines += markdown_224(r["at_224"])
    return "\n".join(lines)


def _load(values) -> str:
    return "n/a" if not values else ", ".join(f"{v:.2f}" for v in values)


def _floor_line(c: dict) -> str:
    name = {"table6": "Table 6"}.get(c.get("architecture", "table6"), c.get("architecture"))
    return (f"**ID ({name}) compute floor**: {c['id_macs_per_image'] / 1e6:.1f} MMAC per 32×32 image; measured "
            f"float32 matmul rate {c['matmul_gmacs_per_s']:.1f} GMAC/s → floor {c['id_floor_images_per_s']:.1f} "
            f"images/s; the ID alone runs at {c['id_images_per_s']:.1f} images/s "
            f"({c['id_achieved_gmacs_per_s']:.1f} GMAC/s), floor / measured = **{c['floor_over_measured']:.2f}**.")


def markdown_224(a: dict) -> list:
    """The 224×224 section: ResNet-50 undefended / + Table 6 ID / + the lighter IDs, and the MACs per image."""
    lines = [
        "## 224×224: ResNet-50 (torchvision, 1000 classes) with the Table 6 ID and the lighter IDs",
        "",
        f"- Data: {a['data']}; batch size {a['batch_size']}; best of {a['reps']} round-robin rounds. Weights: "
        "untrained. IDs at width 1.",
        f"- Load average (1, 5, 15 min) at the start of this section {_load(a['load_average_start'])}, at its end "
        f"{_load(a['load_average_end'])}.",
        "- Peak memory: each variant built and run once (same images, batch size) in a fresh process; \"rise\" = its "
        "peak RSS minus its RSS just before `predict` (the activations and buffers of predict).",
        "",
        "| defence (ResNet-50 target, 224×224) | images | images / s | × undefended | peak RSS MiB | rise MiB |"
        + (" peak CUDA MiB |" if any(r["peak_cuda_mib"] for r in a["rows"]) else ""),
        "|---|---:|---:|---:|---:|---:|" + ("---:|" if any(r["peak_cuda_mib"] for r in a["rows"]) else ""),
    ]
    for row in a["rows"]:
        lines.append(f"| {row['defence']} | {row['images']} | {row['images_per_s']:.2f} | {row['vs_undefended']:.3f} "
                     f"| {row['peak_rss_mib']:.0f} | {row['predict_rise_mib']:.0f} |"
                     + (f" {row['peak_cuda_mib']:.0f} |" if row["peak_cuda_mib"] else ""))
    lines += ["", "MACs per image (convolutions and linear layers, `art_idfr.unet.conv_macs`):", "",
              "| network | 32×32 | 224×224 |", "|---|---:|---:|"]
    for name, m in a["macs"].items():
        lines.append(f"| {name} | " + " | ".join(f"{m[s] / 1e6:,.1f} M" if s in m else "—" for s in ("32", "224"))
                     + " |")
    t6 = a["macs"]["table6 ID, width 1"]
    lines += [""] + [f"- {arch.capitalize()} / Table 6 MACs: {m['32'] / t6['32']:.3f} at 32×32, "
                     f"{m['224'] / t6['224']:.3f} at 224×224." for arch, m in
                     ((k.split()[0], v) for k, v in a["macs"].items() if k.split()[0] in ("light", "slim"))] + [""]
    return lines


if __name__ == "__main__":
    main()
