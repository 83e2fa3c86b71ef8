"""
Distributed fit (issue 16): examples/distributed_fit.py run by ``torchrun --nproc_per_node=2`` (Gloo on CPU) against
the same script in one process, on 600 MNIST digits with a tiny U-Net; plus a rank failure that must end the job
with a clear error instead of a hang. About 1.5 min on 2 CPU cores. Then AdaptiveDenoiserTrainer under 2 spawned
Gloo ranks against one process (about 1 min).
"""
import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from art_idfr.training import distributed as ddp
from art_idfr.training.common import BestEpoch
from conftest import join_gloo, spawn_ranks

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "examples", "distributed_fit.py")
ARGS = ["--n-train", "600", "--n-test", "300", "--epochs", "3", "--fr-epochs", "2", "--eps", "0.15"]


def _env():
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("RANK", None)
    env.pop("WORLD_SIZE", None)
    return env


def _torchrun(*args):
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", SCRIPT, *args]


def _run(cmd, timeout):
    start = time.time()
    proc = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    return proc, time.time() - start


def _reports(out, world):
    return [json.load(open(os.path.join(out, f"rank{r}.json"))) for r in range(world)]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One single-process and one 2-process run of the same script and data."""
    single, dist = str(tmp_path_factory.mktemp("single")), str(tmp_path_factory.mktemp("dist"))
    proc, s_single = _run([sys.executable, SCRIPT, "--out", single, *ARGS], timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    proc, s_dist = _run(_torchrun("--out", dist, *ARGS), timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {"single": (single, _reports(single, 1), s_single), "dist": (dist, _reports(dist, 2), s_dist)}


def test_same_samples_per_epoch(runs):
    (_, [single], _), (_, dist, _) = runs["single"], runs["dist"]
    assert [r["world_size"] for r in dist] == [2, 2] and single["world_size"] == 1
    for key in ("id_history", "fr_history"):
        n_single = [h["n_seen"] for h in single[key]]
        assert n_single and all(n == 3 * 600 for n in n_single)  # AEs + clean + 1 Gaussian copy
        for rep in dist:
            assert [h["n_seen"] for h in rep[key]] == n_single


def test_ranks_agree_on_weights_and_history(runs):
    _, (r0, r1), _ = runs["dist"]
    assert r0["id_digest"] == r1["id_digest"]
    assert r0["fr_digest"] == r1["fr_digest"]
    assert r0["id_history"] == r1["id_history"]  # same losses/validation scores -> same best epoch
    assert r0["fr_history"] == r1["fr_history"]


def test_fitted_id_of_similar_quality(runs):
    single, dist = runs["single"][1][0]["accuracy"], runs["dist"][1][0]["accuracy"]
    print("single:", single, "2 ranks:", dist, "seconds:", runs["single"][2], runs["dist"][2])
    assert dist["clean_undefended"] == single["clean_undefended"]  # the same target
    assert runs["dist"][1][0]["grad_through_id_finite"]  # a backward on rank 0 alone after fit: no DDP left over
    assert dist["fgsm_id"] > dist["fgsm_undefended"] + 0.1
    assert abs(dist["fgsm_id"] - single["fgsm_id"]) <= 0.08
    assert abs(dist["clean_id"] - single["clean_id"]) <= 0.08


def test_only_rank0_writes_checkpoints(runs):
    out = runs["dist"][0]
    files = set(os.listdir(out))
    assert {"id_rank0.pt", "fr_rank0.pt"} <= files
    assert not {"id_rank1.pt", "fr_rank1.pt"} & files
    from art_idfr import FeatureRestorer, IDFRDenoiser

    assert IDFRDenoiser.load(os.path.join(out, "id_rank0.pt"), device_type="cpu").is_fitted
    assert FeatureRestorer.load(os.path.join(out, "fr_rank0.pt"), device_type="cpu").is_fitted


@pytest.mark.parametrize("mode", ["raise", "hang"])
def test_rank_failure_ends_the_job(tmp_path, mode):
    """Rank 1 raises (torchrun stops rank 0) or stalls (rank 0's collective times out after 10 s): no hang."""
    args = ["--out", str(tmp_path), "--n-train", "100", "--n-test", "30", "--epochs", "1", "--fr-epochs", "1",
            "--fail-rank", "1", "--fail-mode", mode, "--timeout", "10"]
    proc, seconds = _run(_torchrun(*args), timeout=120)
    log = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert seconds < 90
    if mode == "raise":
        assert "injected failure on rank 1" in log
    else:
        assert "Timed out" in log or "timed out" in log.lower()
    assert not os.path.exists(tmp_path / "rank0.json")


# ---------------------------------------------------------------------- helpers, in one process
def test_shard_bounds_cover_range():
    for n in (0, 1, 5, 10, 11):
        for world in (1, 2, 3):
            bounds = [ddp.shard_bounds(n, world, r) for r in range(world)]
            assert bounds[0][0] == 0 and bounds[-1][1] == n
            assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))
            assert max(h - lo for lo, h in bounds) - min(h - lo for lo, h in bounds) <= 1


def test_local_rows_partition_and_pad(monkeypatch):
    monkeypatch.setattr(ddp, "world_size", lambda: 2)
    seen = []
    for r in range(2):
        monkeypatch.setattr(ddp, "rank", lambda r=r: r)
        rows, own = ddp.local_rows(7)
        assert own.all()
        seen += rows.tolist()
    assert sorted(seen) == list(range(7))
    monkeypatch.setattr(ddp, "rank", lambda: 1)
    rows, own = ddp.local_rows(1)  # nothing of its own: one masked row, so DDP's backward still runs
    assert rows.tolist() == [0] and own.tolist() == [False]
    rows, own = ddp.local_rows(3, min_rows=2)  # BatchNorm1d needs 2 rows
    assert rows.tolist() == [1, 0] and own.tolist() == [True, False]


def test_single_process_helpers_are_noops():
    assert not ddp.is_distributed() and ddp.rank() == 0 and ddp.world_size() == 1 and ddp.is_main_process()
    x = np.arange(6).reshape(3, 2)
    assert ddp.all_gather_numpy(x) is x
    assert ddp.all_reduce_sum(1, 2.5) == [1.0, 2.5]
    net = torch.nn.Linear(2, 2)
    assert ddp.wrap_ddp(net) is net
    ddp.barrier()
    ddp.sync_module(net)


# ---------------------------------------------------------------------- adaptive training under DDP (spawned ranks)
def _adaptive_fit(target_state, fr_file, data, checkpoint=None, checkpoint_every=200, batch_size=30, **trainer_kwargs):
    """
    A tiny adaptive fit (PGD-2 through ID+FR, both trained; fixed FGSM AEs; validation; a resume file at
    ``checkpoint``, written every ``checkpoint_every`` steps; ``batch_size`` 30: 2 steps on 60 images; further
    trainer keywords): trainer, ID, FR, and the FR's weights after the last epoch (before the best epoch's weights are
    put back).
    """
    from unittest import mock

    from art.attacks.evasion import FastGradientMethod

    from art_idfr import FeatureRestorer, IDFRDenoiser
    from art_idfr.training.adaptive import AdaptiveDenoiserTrainer
    from conftest import make_classifier, tiny_cnn

    model = tiny_cnn()
    model.load_state_dict(target_state)
    clf = make_classifier(model)
    x, y, x_val, y_val = data
    den = IDFRDenoiser(input_shape=(1, 28, 28), width=0.125, batch_size=32, device_type="cpu", seed=0)
    fr = FeatureRestorer.load(fr_file, device_type="cpu")
    trainer = AdaptiveDenoiserTrainer(clf, den, restorer=fr, eps=0.15, max_iter=2, nb_epochs=2, batch_size=batch_size,
                                      learning_rate=2e-3, train_restorer=True, seed=0, **trainer_kwargs)
    last_fr = {}
    finish = BestEpoch.finish

    def keep_last(best, kept):  # kept: the ID and the FR (nn.ModuleList)
        last_fr.update({k: v.detach().clone() for k, v in kept[1].state_dict().items()})
        finish(best, kept)

    with mock.patch.object(BestEpoch, "finish", keep_last):
        trainer.fit(x, y, attacks=[FastGradientMethod(clf, eps=0.15, batch_size=32)], validation_data=(x_val, y_val),
                    checkpoint=checkpoint, checkpoint_every=checkpoint_every)
    return trainer, den, fr, last_fr


def _adaptive_worker(rank, world, port, target_state, fr_file, data, out, trainer_kwargs):
    join_gloo(rank, world, port)
    trainer, den, fr, last_fr = _adaptive_fit(target_state, fr_file, data, **trainer_kwargs)
    lin = torch.nn.Linear(2, 1)  # average_gradients alone: rank r's gradient r + 1 -> the mean 1.5 everywhere
    lin.weight.grad, lin.bias.grad = torch.full((1, 2), rank + 1.0), None
    ddp.average_gradients(lin)
    state = {"history": trainer.history, "den": den.network.state_dict(), "fr": fr.network.state_dict(),
             "last_fr": last_fr, "averaged": (lin.weight.grad.tolist(), lin.bias.grad.tolist())}
    torch.save(state, os.path.join(out, f"rank{rank}.pt"))
    ddp.leave_group()


def _update_cosine(start, single, dist) -> float:
    """Cosine between the weight updates (weights − start) of the two runs, over the floating parameters."""
    keys = [k for k, v in single.items() if v.is_floating_point() and "running" not in k]
    d_s = torch.cat([(single[k] - start[k]).flatten() for k in keys])
    d_d = torch.cat([(dist[k] - start[k]).flatten() for k in keys])
    return float(d_s @ d_d / (d_s.norm() * d_d.norm()))


@pytest.fixture
def one_thread():
    """The single-process run on one torch thread, as each rank (small models on shared cores: far faster)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("trainer_kwargs", [{}, {"trades_beta": 2.0, "trades_reference": "defended",
                                                 "adversarial_weight": 0.0}], ids=["default", "trades_proper"])
def test_adaptive_two_ranks_match_one_process(trained_target, mnist_small, tmp_path, one_thread, trainer_kwargs):
    """
    AdaptiveDenoiserTrainer (ID under DDP, the FR trained alongside with averaged gradients; the default loss, and
    TRADES proper: each rank's KL to its own rows' defended clean prediction) under 2 Gloo ranks vs
    one process on the same 60 digits: the same samples per epoch, identical weights and history on both ranks, the
    same validation before training (same random starts), and losses, accuracies and weight updates within tolerance
    of the single-process run (BatchNorm: per-rank batch statistics).
    """
    from art_idfr import FeatureRestorer, IDFRDenoiser

    x_train, y_train, x_test, y_test = mnist_small
    data = (x_train[:60], y_train[:60], x_test[:30], y_test[:30])
    target_state = {k: v.clone() for k, v in trained_target.model.state_dict().items()}
    start = IDFRDenoiser(input_shape=(1, 28, 28), width=0.125, device_type="cpu", seed=0)
    fr_start = FeatureRestorer(nb_epochs=1, batch_size=32, device_type="cpu", seed=0)
    fr_start.fit(data[0], data[1], classifier=trained_target, denoiser=start)  # the FR both runs start from
    fr_file = str(tmp_path / "fr.pt")
    fr_start.save(fr_file)
    single, den, fr, last_fr = _adaptive_fit(target_state, fr_file, data, **trainer_kwargs)
    spawn_ranks(_adaptive_worker, 2, target_state, fr_file, data, str(tmp_path), trainer_kwargs)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2))
    assert [h.get("n_seen") for h in single.history] == [None, 60, 60]  # epoch 0: validation of the start
    assert [h.get("n_seen") for h in r0["history"]] == [None, 60, 60]
    assert r0["history"] == r1["history"]
    for key in ("den", "fr", "last_fr"):
        assert all(torch.equal(r0[key][k], r1[key][k]) for k in r0[key])
    assert r0["history"][0] == single.history[0]  # same weights, same random starts: the same validation
    for h_d, h_s in zip(r0["history"][1:], single.history[1:]):
        assert h_d["loss"] == pytest.approx(h_s["loss"], rel=0.03)
        for key in ("train_adv_acc", "val_acc", "val_adv_acc"):
            assert abs(h_d[key] - h_s[key]) <= 0.1, (key, h_d, h_s)
    best = [max(h, key=lambda e: e["val_score"])["epoch"] for h in (single.history, r0["history"])]
    assert best[0] == best[1]  # the same best epoch: its ID and FR weights kept (here the start, epoch 0)
    if best[0] == 0:
        assert all(torch.equal(v, r0["den"][k]) for k, v in start.network.state_dict().items())
        assert all(torch.equal(v, r0["fr"][k]) for k, v in fr_start.network.state_dict().items())
    cosine = _update_cosine(fr_start.network.state_dict(), last_fr, r0["last_fr"])  # the last epoch's FR
    print("adaptive: single", single.history, "2 ranks", r0["history"], "FR update cosine", cosine)
    assert cosine > 0.5, cosine
    assert r0["averaged"] == r1["averaged"] == ([[1.5, 1.5]], [0.0])


def _resume_worker(rank, world, port, target_state, fr_file, data, out, tag, cut_after, every, batch):
    """A rank of the tiny adaptive fit (batches of ``batch``) with a resume file in ``out`` written every ``every``
    steps; cut after
    ``cut_after`` steps (None: not cut); saves the rank's weights and history as ``out/<tag><rank>.pt`` when it
    finishes."""
    from unittest import mock

    from art_idfr.training import adaptive
    from conftest import counted

    join_gloo(rank, world, port)
    cut = counted(adaptive._AdaptiveRun.batch_loss, [], cut_after=cut_after)
    try:
        with mock.patch.object(adaptive._AdaptiveRun, "batch_loss", cut):
            trainer, den, fr, _ = _adaptive_fit(target_state, fr_file, data, os.path.join(out, "resume.pt"), every,
                                                batch)
        torch.save({"history": trainer.history, "den": den.network.state_dict(), "fr": fr.network.state_dict()},
                   os.path.join(out, f"{tag}{rank}.pt"))
    except KeyboardInterrupt:  # the run is cut off on every rank at the same step
        pass
    ddp.leave_group()


@pytest.mark.parametrize("cut_after, every, batch, saved_at", [(2, 200, 30, (1, None)), (4, 1, 29, (1, 1))])
def test_adaptive_two_ranks_resume_a_cut_fit(trained_target, mnist_small, tmp_path, one_thread, cut_after, every,
                                             batch, saved_at):
    """
    Two Gloo ranks cut off (after the first epoch: 2 of 4 steps of 30; or inside the second: 4 of 6 steps of 29, 29
    and 2 images, ranks holding 15 / 14 rows of a batch of 29, a file every step),
    rank 0 having written the resume file, and started again: the file is gone and both ranks agree. Cut at an
    epoch's end they end at the weights and history of an uncut two-rank run; cut inside an epoch (every rank then
    resumes with rank 0's BatchNorm running statistics) the history counts every sample once and the weights stay
    close.
    """
    from art_idfr import FeatureRestorer, IDFRDenoiser

    x_train, y_train, x_test, y_test = mnist_small
    data = (x_train[:60], y_train[:60], x_test[:30], y_test[:30])  # batch 30: 2 steps per epoch
    target_state = {k: v.clone() for k, v in trained_target.model.state_dict().items()}
    fr_start = FeatureRestorer(nb_epochs=1, batch_size=32, device_type="cpu", seed=0)
    fr_start.fit(data[0], data[1], classifier=trained_target,
                 denoiser=IDFRDenoiser(input_shape=(1, 28, 28), width=0.125, device_type="cpu", seed=0))
    fr_file = str(tmp_path / "fr.pt")
    fr_start.save(fr_file)
    uncut, cut = tmp_path / "uncut", tmp_path / "cut"
    for folder in (uncut, cut):
        folder.mkdir()
    spawn_ranks(_resume_worker, 2, target_state, fr_file, data, str(uncut), "uncut", None, every, batch)
    spawn_ranks(_resume_worker, 2, target_state, fr_file, data, str(cut), "cut", cut_after, every, batch)
    assert (cut / "resume.pt").exists() and not list(cut.glob("cut*.pt"))
    state = torch.load(cut / "resume.pt", weights_only=True)["state"]
    assert (state["epoch"], (state["position"] or {}).get("step")) == saved_at
    spawn_ranks(_resume_worker, 2, target_state, fr_file, data, str(cut), "resumed", None, every, batch)
    assert not (cut / "resume.pt").exists()
    expected = torch.load(uncut / "uncut0.pt", weights_only=True)
    got = [torch.load(cut / f"resumed{rank}.pt", weights_only=True) for rank in range(2)]
    assert got[0]["history"] == got[1]["history"]
    assert [h.get("n_seen") for h in got[0]["history"]] == [None, 60, 60]
    for key in ("den", "fr"):
        assert all(torch.equal(got[0][key][k], got[1][key][k]) for k in got[0][key])
    if saved_at[1] is None:  # cut at an epoch's end: exactly the uncut run
        assert got[0]["history"] == expected["history"]
        for key in ("den", "fr"):
            assert all(torch.equal(expected[key][k], got[0][key][k]) for k in expected[key]), key
    else:  # cut inside epoch 2: epoch 0-1 as saved, epoch 2 close (its crafting saw rank 0's BN statistics)
        assert got[0]["history"][:2] == expected["history"][:2]
        assert got[0]["history"][2]["loss"] == pytest.approx(expected["history"][2]["loss"], rel=0.05)


# ---------------------------------------------------------------------- inner restorers under DDP (issue 41)
def _inner_fit(target_state, inner_state, data):
    """A tiny adaptive fit of rank-2 deltas inside the frozen tiny CNN, no ID (PGD-2, 2 epochs of 2 steps on 60 images,
    validation): trainer, inner restorer, and the target's state after the fit."""
    from art_idfr import InnerRestorer
    from art_idfr.training.adaptive import AdaptiveDenoiserTrainer
    from conftest import make_classifier, tiny_cnn

    model = tiny_cnn()
    model.load_state_dict(target_state)
    clf = make_classifier(model)
    inner = InnerRestorer((1, 28, 28), kind="lora", rank=2, device_type="cpu").build(model)
    inner.network.load_state_dict(inner_state)  # the same start in every process
    x, y, x_val, y_val = data
    trainer = AdaptiveDenoiserTrainer(clf, None, inner=inner, eps=0.15, max_iter=2, nb_epochs=2, batch_size=30,
                                      learning_rate=3e-3, seed=0)
    trainer.fit(x, y, validation_data=(x_val, y_val))
    return trainer, inner, {k: v.detach().clone() for k, v in model.state_dict().items()}


def _inner_worker(rank, world, port, target_state, inner_state, data, out):
    join_gloo(rank, world, port)
    trainer, inner, after = _inner_fit(target_state, inner_state, data)
    torch.save({"history": trainer.history, "inner": inner.network.state_dict(), "target": after},
               os.path.join(out, f"inner_rank{rank}.pt"))
    ddp.leave_group()


def test_inner_restorers_two_ranks_match_one_process(trained_target, mnist_small, tmp_path, one_thread):
    """
    Low-rank deltas inside the frozen target trained under 2 Gloo ranks (their gradients averaged by hand: they run in
    the target's hooks, outside DDP) vs one process: identical deltas and history on both ranks, the same validation
    of the start, loss and accuracies within tolerance, updates in the same direction, and the target bit-identical.
    """
    from art_idfr import InnerRestorer

    x_train, y_train, x_test, y_test = mnist_small
    data = (x_train[:60], y_train[:60], x_test[:30], y_test[:30])
    target_state = {k: v.clone() for k, v in trained_target.model.state_dict().items()}
    torch.manual_seed(0)
    start = InnerRestorer((1, 28, 28), kind="lora", rank=2, device_type="cpu").build(trained_target.model)
    inner_state = {k: v.clone() for k, v in start.network.state_dict().items()}
    single, inner, _ = _inner_fit(target_state, inner_state, data)
    spawn_ranks(_inner_worker, 2, target_state, inner_state, data, str(tmp_path))
    r0, r1 = (torch.load(tmp_path / f"inner_rank{r}.pt", weights_only=True) for r in range(2))
    assert r0["history"] == r1["history"] and [h.get("n_seen") for h in r0["history"]] == [None, 60, 60]
    assert all(torch.equal(r0["inner"][k], r1["inner"][k]) for k in r0["inner"])
    assert all(torch.equal(r["target"][k], v) for r in (r0, r1) for k, v in target_state.items())
    assert r0["history"][0] == single.history[0]
    for h_d, h_s in zip(r0["history"][1:], single.history[1:]):
        assert h_d["loss"] == pytest.approx(h_s["loss"], rel=0.05)
        for key in ("train_adv_acc", "val_acc", "val_adv_acc"):
            assert abs(h_d[key] - h_s[key]) <= 0.1, (key, h_d, h_s)
    single_state = inner.network.state_dict()  # the best epoch's deltas: here epoch 2 (measured), so trained
    assert max(single.history, key=lambda e: e["val_score"])["epoch"] > 0
    cosine = _update_cosine(inner_state, single_state, r0["inner"])
    print("inner: single", single.history, "2 ranks", r0["history"], "update cosine", cosine)  # measured 0.9999998
    assert cosine > 0.9, cosine
