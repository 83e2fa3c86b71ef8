"""
Distributed evaluation (art_idfr.experiments.evaluation.sharding, issue 16): a tiny evaluation on generated data run by
2 spawned Gloo ranks against the same evaluation in one process (same records; Square and white-box attacks on
TotalVarMin within tolerance), resume decided by rank 0 alone, and the helpers' single-process identities.
"""
import os

import numpy as np
import pytest
import torch

from art_idfr._utils import skip_numpy_draws
from art_idfr.experiments.evaluation import EvalConfig, evaluate, sharding, wrap_model
from test_evaluation import CLASSES, SHAPE, _synthetic

#: cells a shard reproduces exactly (module docstring of sharding); the others agree within tolerance
EXACT_ATTACKS = ("clean", "fgsm", "bim", "pgd", "cw")
#: checks computed from exactly reproduced hits
EXACT_CHECKS = ("undefended_whitebox_large_eps", "defended_gradient", "whitebox_not_above_blackbox",
                "whitebox_not_above_graybox", "large_eps_to_zero")


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """One torch and one BLAS thread (a shared 2-core machine runs these tiny models far faster so)."""
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(limits=1):
        yield
    torch.set_num_threads(before)


def _config() -> EvalConfig:
    # 30 / 12 / 6 images in batches of 8: rank 1's shard starts inside a batch (15, 6, 3), as it will in general
    return EvalConfig.preset(
        "tiny", width=0.25, surrogate_width=0.25, eps=(0.3,), attacks=("fgsm", "pgd", "cw"), attack_iter=4,
        eval_n=30, whitebox_n=12, query_n=6, query_iter=10, tvm_max_iter=2, attack_batch_size=8,
        defences=("none", "idfr", "tvm"), sanity_square_iter=10,
    ).resolved(1)


def _models(folder: str):
    """Target, surrogate, ID and FR, from the files the parent wrote (every rank builds the same objects)."""
    from art_idfr import FeatureRestorer, IDFRDenoiser
    from art_idfr.experiments.models import make_model

    nets = []
    for name in ("target", "surrogate"):
        m = make_model("small_cnn", CLASSES, SHAPE, width=0.25)
        m.load_state_dict(torch.load(os.path.join(folder, f"{name}.pt"), weights_only=True))
        nets.append(m.eval())
    den = IDFRDenoiser.load(os.path.join(folder, "id.pt"), device_type="cpu")
    fr = FeatureRestorer.load(os.path.join(folder, "fr.pt"), device_type="cpu")
    return (*nets, den, fr)


def _evaluate(folder: str, checkpoint_dir=None):
    target, surrogate, den, fr = _models(folder)
    return evaluate(_config(), _synthetic(), target, surrogate, den, fr, command="pytest sharding", verbose=False,
                    checkpoint_dir=checkpoint_dir)


def _worker(rank, world, port, folder):
    """
    One rank: the evaluation (checkpointing into its own folder: only rank 0's may fill), then the same again
    (every threat model resumed; the gradient-masking cells from rank 0's cell cache).
    """
    import json

    from threadpoolctl import threadpool_limits

    from art_idfr.training import distributed as ddp
    from conftest import join_gloo

    join_gloo(rank, world, port)  # (one torch thread)
    threadpool_limits(limits=1)
    ckpt = os.path.join(folder, f"ckpt_rank{rank}")
    first = _evaluate(folder, ckpt)
    again = _evaluate(folder, ckpt)  # rank 0's checkpoint holds every threat model: all ranks resume from it
    out = {"records": first.records, "per_sample": {"|".join(map(str, k)): v.tolist()
                                                    for k, v in first.per_sample.items()},
           "sanity": first.sanity_checks, "processes": first.metadata.get("processes"),
           "resumed": sorted(again.metadata.get("resumed", {})), "again": again.records,
           "reused": [first.metadata.get("reused_cells", {}), again.metadata.get("reused_cells", {})],
           "sanity_again": again.sanity_checks}
    with open(os.path.join(folder, f"rank{rank}.json"), "w") as f:
        json.dump(out, f, default=str)
    ddp.leave_group()


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The models (written to a folder), the single-process evaluation and the 2-rank one."""
    import json

    from art_idfr import FeatureRestorer, IDFRDenoiser
    from art_idfr.experiments.models import make_model, train_model
    from conftest import spawn_ranks

    folder = str(tmp_path_factory.mktemp("sharding"))
    data = _synthetic()
    for name, seed in (("target", 0), ("surrogate", 7)):
        m = make_model("small_cnn", CLASSES, SHAPE, width=0.25, seed=seed)
        train_model(m, data.x_train, data.y_train, epochs=2, batch_size=32, device="cpu", seed=seed, verbose=False)
        torch.save(m.state_dict(), os.path.join(folder, f"{name}.pt"))
        if name == "target":
            clf = wrap_model(m, SHAPE, CLASSES, "cpu")
    den = IDFRDenoiser(SHAPE, width=0.25, nb_epochs=1, device_type="cpu", batch_size=64)
    x_adv = np.clip(data.x_train[:120] + 0.1 * np.sign(np.random.default_rng(0).standard_normal((120, *SHAPE))), 0, 1)
    den.fit(data.x_train[:120], data.y_train[:120], classifier=clf, x_adv=x_adv.astype(np.float32))
    fr = FeatureRestorer(nb_epochs=1, device_type="cpu", batch_size=64)
    fr.fit(data.x_train[:120], data.y_train[:120], classifier=clf, denoiser=den)
    den.save(os.path.join(folder, "id.pt"))
    fr.save(os.path.join(folder, "fr.pt"))
    single = _evaluate(folder)
    spawn_ranks(_worker, 2, folder)
    ranks = [json.load(open(os.path.join(folder, f"rank{r}.json"))) for r in range(2)]
    return folder, single, ranks


def _key(r):
    return r["threat_model"], r["defence_key"], r["attack"], r["eps"]


def _exact(r) -> bool:
    return r["attack"] == "clean" or (r["attack"] in EXACT_ATTACKS and not (r["threat_model"] == "white-box"
                                                                          and r["defence_key"] == "tvm"))


def test_two_ranks_give_the_single_process_records(runs):
    _, single, (r0, r1) = runs
    assert r0["processes"] == r1["processes"] == 2
    assert r0["records"] == r1["records"]  # every rank holds the whole run
    assert [_key(r) for r in r0["records"]] == [_key(r) for r in single.records]
    exact = 0
    for d, s in zip(r0["records"], single.records):
        assert d["n"] == s["n"]
        if _exact(s):
            exact += 1
            assert d["n_correct"] == s["n_correct"] and d["accuracy"] == s["accuracy"], (_key(s), d, s)
            assert r0["per_sample"]["|".join(map(str, _key(s)))] == single.per_sample[_key(s)].tolist()
        else:  # Square (query) and white-box attacks on TotalVarMin: a shard cannot replay their draws
            assert abs(d["accuracy"] - s["accuracy"]) <= 0.34, (_key(s), d["accuracy"], s["accuracy"])
    assert exact >= 20  # clean x 4 threat models x 3 defences + transfer + white-box cells


def test_two_ranks_give_the_single_process_sanity_checks(runs):
    _, single, (r0, r1) = runs
    assert r0["sanity"] == r1["sanity"]
    for name in EXACT_CHECKS:
        assert r0["sanity"]["checks"][name] == single.sanity_checks["checks"][name], name
    for name in ("gradient_free_not_stronger", "more_steps_not_better"):
        assert set(r0["sanity"]["checks"][name]["per_defence"]) == set(single.sanity_checks["checks"][name]
                                                                         ["per_defence"])


def test_cell_reuse_is_rank0s_cache(runs):
    """The second evaluation re-runs no masking attack: every rank takes rank 0's cached hits, checks unchanged."""
    folder, _, (r0, r1) = runs
    assert r0["reused"][0] == r1["reused"][0] == {}  # the first evaluation had nothing to reuse
    assert r0["reused"][1] == r1["reused"][1] and r0["reused"][1].get("masking", 0) >= 3, r0["reused"]
    assert os.listdir(os.path.join(folder, "ckpt_rank0", "eval_cells"))
    assert not os.path.exists(os.path.join(folder, "ckpt_rank1", "eval_cells"))
    assert r0["sanity_again"] == r1["sanity_again"]
    assert r0["sanity_again"]["checks"] == r0["sanity"]["checks"]


def test_resume_is_rank0s_checkpoint(runs):
    folder, _, (r0, r1) = runs
    assert os.listdir(os.path.join(folder, "ckpt_rank0"))  # rank 0 wrote the checkpoint and partial reports
    assert not os.path.exists(os.path.join(folder, "ckpt_rank1")) or not os.listdir(os.path.join(folder, "ckpt_rank1"))
    tms = ["black-box", "gray-box", "query", "white-box"]
    assert r0["resumed"] == r1["resumed"] == tms  # rank 1 resumed too, from rank 0's checkpoint (its own is empty)
    assert r0["again"] == r1["again"]
    assert [(_key(r), r["n_correct"]) for r in r0["again"]] == [(_key(r), r["n_correct"]) for r in r0["records"]]


# ---------------------------------------------------------------------- the helpers, in one process
def test_skip_numpy_draws_reaches_a_shards_random_start():
    np.random.seed(3)
    whole = np.random.uniform(-0.3, 0.3, (10, 4))  # ART's random start of 10 images of 4 values
    np.random.seed(3)
    skip_numpy_draws(sharding.start_draws("pgd", 6, 4))
    assert np.array_equal(np.random.uniform(-0.3, 0.3, (4, 4)), whole[6:])
    np.random.seed(3)
    skip_numpy_draws(sharding.prediction_draws(True, 6, 4))
    assert np.array_equal(np.random.rand(4, 4), np.random.RandomState(3).rand(10, 4)[6:])  # TotalVarMin's masks
    assert sharding.start_draws("fgsm", 6, 4) == sharding.start_draws("square", 6, 4) == 0
    assert sharding.start_draws("pgd", 6, 4, num_random_init=2) == sharding.start_draws("pgd", 6, 4, True) == 0
    assert sharding.prediction_draws(False, 6, 4) == 0
    with pytest.raises(ValueError, match=">= 0"):
        skip_numpy_draws(-1)


def test_single_process_helpers_are_identities():
    assert sharding.shard(7) == slice(0, 7) and sharding.is_main_process() and sharding.processes() == {}
    hits = np.array([True, False])
    assert sharding.gather_hits(hits) is hits
    assert sharding.from_main({"a": 1}) == {"a": 1}
    assert sharding.generate(None, np.zeros((0, *SHAPE), np.float32), np.zeros((0, 3))).shape == (0, *SHAPE)
    assert sharding.predicted_hits(None, np.zeros((0, *SHAPE)), np.zeros(0), 8).shape == (0,)
