"""Adaptive training of the ID (not in the paper): online AEs through ID(+FR)+target, robustness it buys, records."""
import copy

import numpy as np
import pytest
import torch
from art.attacks.evasion import FastGradientMethod, ProjectedGradientDescent
from torch.optim.optimizer import register_optimizer_step_post_hook

from art_idfr import FeatureRestorer, IDFRDenoiser, as_module, defend
from art_idfr.training.adaptive import AdaptiveDenoiserTrainer


def pgd_accuracy(classifier, x, y, eps, steps=10):
    attack = ProjectedGradientDescent(classifier, eps=eps, eps_step=2.5 * eps / steps, max_iter=steps,
                                      num_random_init=1, verbose=False)
    x_adv = attack.generate(x, y=np.eye(10, dtype=np.float32)[y])
    return float((classifier.predict(x_adv).argmax(1) == y).mean())


@pytest.fixture(scope="module")
def paper_id(trained_target, mnist_small):
    """An ID fitted by Algorithm 1 (fixed AEs of the bare target): the starting point of adaptive training."""
    x_train, y_train, _, _ = mnist_small
    den = IDFRDenoiser(input_shape=(1, 28, 28), width=0.25, nb_epochs=2, batch_size=64, device_type="cpu", seed=0)
    den.fit(x_train[:500], y_train[:500], classifier=trained_target,
            attacks=[FastGradientMethod(trained_target, eps=0.2)])
    return den


def test_adaptive_training_raises_white_box_accuracy(trained_target, paper_id, mnist_small):
    """Through the whole defended classifier, PGD accuracy goes up after adaptive training (the paper's ID: ~0)."""
    x_train, y_train, x_test, y_test = mnist_small
    eps = 0.2
    before = pgd_accuracy(defend(trained_target, paper_id), x_test[:100], y_test[:100], eps)
    den = copy.deepcopy(paper_id)
    trainer = AdaptiveDenoiserTrainer(trained_target, den, eps=eps, max_iter=3, nb_epochs=3, batch_size=64,
                                      learning_rate=2e-3, verbose=False)
    trainer.fit(x_train[:600], y_train[:600], attacks=[FastGradientMethod(trained_target, eps=eps)])
    defended = trainer.get_classifier()
    after = pgd_accuracy(defended, x_test[:100], y_test[:100], eps)
    clean = float((defended.predict(x_test[:100]).argmax(1) == y_test[:100]).mean())
    assert after >= before + 0.15, (before, after)
    assert clean >= 0.6
    info = den.training_info
    assert info["algorithm"] == "adaptive" and info["in_paper"] is False and info["eps"] == eps
    assert info["init"]["algorithm"] == "algorithm1" and info["max_iter"] == 3
    assert [h["epoch"] for h in trainer.history] == [1, 2, 3] and all(np.isfinite(h["loss"]) for h in trainer.history)


def test_adaptive_checkpoint_records_how_it_was_trained(trained_target, mnist_small, tmp_path):
    x_train, y_train, _, _ = mnist_small
    den = IDFRDenoiser(input_shape=(1, 28, 28), width=0.125, batch_size=32, device_type="cpu", seed=0)
    trainer = AdaptiveDenoiserTrainer(trained_target, den, eps=0.1, attack="fgsm_rs", nb_epochs=1)
    trainer.fit(x_train[:64], y_train[:64], validation_data=(x_train[64:96], y_train[64:96]))
    assert [h["epoch"] for h in trainer.history] == [0, 1]  # the starting point is scored (and may be kept)
    assert all({"val_acc", "val_adv_acc", "val_score"} <= set(h) for h in trainer.history)
    den.save(tmp_path / "id.pt")
    loaded = IDFRDenoiser.load(str(tmp_path / "id.pt"))
    assert loaded.is_fitted and loaded.training_info["algorithm"] == "adaptive"
    assert loaded.training_info["attack"] == "fgsm_rs" and loaded.training_info["init"] is None


def test_fixed_weight_zero_neither_crafts_nor_mixes_the_fixed_aes(trained_target, mnist_small):
    """fixed_weight=0 is training without Algorithm 1's AEs: not crafted, and not in the ID's BatchNorm batches."""
    x_train, y_train, _, _ = mnist_small

    class Counting(FastGradientMethod):
        calls = 0

        def generate(self, x, y=None, **kwargs):
            Counting.calls += 1
            return super().generate(x, y, **kwargs)

    start = IDFRDenoiser(input_shape=(1, 28, 28), width=0.125, batch_size=32, device_type="cpu", seed=0)
    fitted = []
    fgsm = Counting(trained_target, eps=0.1)
    for attacks, weight in (([fgsm], 0.0), ([], 1.0), ([fgsm], 1.0)):
        den = copy.deepcopy(start)
        AdaptiveDenoiserTrainer(trained_target, den, eps=0.1, max_iter=1, nb_epochs=1, fixed_weight=weight,
                                seed=0).fit(x_train[:64], y_train[:64], attacks=attacks)
        fitted.append(den)
    assert Counting.calls == 1  # only the run with fixed_weight=1 crafted
    assert fitted[0].training_info["fixed_weight"] == 0.0
    same, other = (all(torch.equal(a, b) for a, b in zip(fitted[0].network.state_dict().values(),
                                                          d.network.state_dict().values())) for d in fitted[1:])
    assert same and not other


def test_adaptive_with_any_art_attack_and_through_the_restorer(trained_target, paper_id, mnist_small):
    """An ART EvasionAttack built on the defended classifier can be the inner attack; the FR can be trained too."""
    x_train, y_train, _, _ = mnist_small
    fr = FeatureRestorer(nb_epochs=1, batch_size=64, device_type="cpu")
    fr.fit(x_train[:200], y_train[:200], classifier=trained_target, denoiser=paper_id)
    seen = []

    def pgd_on(defended):
        seen.append(defended)
        return ProjectedGradientDescent(defended, eps=0.1, eps_step=0.05, max_iter=2, verbose=False)

    weights = {k: v.clone() for k, v in fr.network.state_dict().items()}
    trainer = AdaptiveDenoiserTrainer(trained_target, paper_id, restorer=fr, attack=pgd_on, eps=0.1, nb_epochs=1,
                                      batch_size=64, train_restorer=True)
    trainer.fit(x_train[:128], y_train[:128])
    assert len(seen) == 2 and isinstance(seen[0].preprocessing_defences[0], IDFRDenoiser)
    assert any(not torch.equal(weights[k], v) for k, v in fr.network.state_dict().items())  # the FR was trained
    assert fr.training_info["adaptive"]["train_restorer"] is True


def test_best_epoch_keeps_the_id_and_the_jointly_trained_fr_together(trained_target, paper_id, mnist_small,
                                                                     monkeypatch):
    """When an earlier epoch scores best on validation, both the ID and the FR trained with it go back to that
    epoch's weights (not an ID of one epoch behind an FR of another)."""
    from art_idfr.training import adaptive

    x_train, y_train, x_val, y_val = mnist_small
    fr = FeatureRestorer(nb_epochs=1, batch_size=64, device_type="cpu")
    fr.fit(x_train[:200], y_train[:200], classifier=trained_target, denoiser=paper_id)
    den = copy.deepcopy(paper_id)
    start = [{k: v.clone() for k, v in m.network.state_dict().items()} for m in (den, fr)]
    scores = iter([0.9, 0.5, 0.4])  # the starting point (epoch 0) scores best
    monkeypatch.setattr(adaptive._AdaptiveRun, "validate", lambda self, data: {"val_score": next(scores)})
    trainer = AdaptiveDenoiserTrainer(trained_target, den, restorer=fr, eps=0.1, max_iter=1, nb_epochs=2,
                                      batch_size=64, learning_rate=1e-2, train_restorer=True, verbose=False)
    trainer.fit(x_train[:128], y_train[:128], validation_data=(x_val[:10], y_val[:10]))
    assert [h.get("val_score") for h in trainer.history] == [0.9, 0.5, 0.4]
    for model, weights in zip((den, fr), start):
        assert all(torch.equal(weights[k], v) for k, v in model.network.state_dict().items())


def test_keep_start_false_hands_the_trained_weights_on(trained_target, paper_id, mnist_small, monkeypatch):
    """keep_start=False (a curriculum stage): the start still scores best and is recorded, but the best trained
    epoch is kept."""
    from art_idfr.training import adaptive

    x_train, y_train, x_val, y_val = mnist_small
    den = copy.deepcopy(paper_id)
    start = {k: v.clone() for k, v in den.network.state_dict().items()}
    scores = iter([0.9, 0.5, 0.4])
    monkeypatch.setattr(adaptive._AdaptiveRun, "validate", lambda self, data: {"val_score": next(scores)})
    trainer = AdaptiveDenoiserTrainer(trained_target, den, eps=0.1, max_iter=1, nb_epochs=2, batch_size=64,
                                      learning_rate=1e-2, keep_start=False, verbose=False)
    trainer.fit(x_train[:128], y_train[:128], validation_data=(x_val[:10], y_val[:10]))
    assert [h.get("val_score") for h in trainer.history] == [0.9, 0.5, 0.4]
    assert any(not torch.equal(start[k], v) for k, v in den.network.state_dict().items())
    assert den.training_info["keep_start"] is False


@pytest.mark.parametrize("kwargs, message", [
    (dict(eps=0.0), "eps must lie in"),
    (dict(eps=2.0), "eps must lie in"),
    (dict(attack="deepfool"), "attack must be one of"),
    (dict(max_iter=0), "max_iter and batch_size"),
    (dict(trades_beta=-1.0), "non-negative"),
    (dict(train_restorer=True), "needs a restorer"),
    (dict(restorer=FeatureRestorer(device_type="cpu")), "must be fitted"),
    (dict(ema_decay=1.0), "ema_decay must lie in"),
    (dict(trades_reference="clean"), "trades_reference must be one of"),
    (dict(adversarial_weight=0.0), "needs trades_beta > 0"),
    (dict(adversarial_weight=-1.0, trades_beta=1.0), "non-negative"),
])
def test_bad_settings_get_clear_errors(trained_target, kwargs, message):
    den = IDFRDenoiser(input_shape=(1, 28, 28), width=0.125, device_type="cpu")
    with pytest.raises(ValueError, match=message):
        AdaptiveDenoiserTrainer(trained_target, den, **kwargs)


def test_plain_module_equals_predict(trained_target, paper_id, mnist_small):
    """as_module(defended) is a plain nn.Module whose logits equal the defended classifier's predict, ID+FR too."""
    x_train, y_train, x_test, _ = mnist_small
    fr = FeatureRestorer(nb_epochs=1, batch_size=64, device_type="cpu")
    fr.fit(x_train[:200], y_train[:200], classifier=trained_target, denoiser=paper_id)
    for defended in (defend(trained_target, paper_id), defend(trained_target, paper_id, fr)):
        module = as_module(defended)
        assert isinstance(module, torch.nn.Module) and any(True for _ in module.parameters())
        with torch.no_grad():
            out = module(torch.as_tensor(x_test[:50])).numpy()
        np.testing.assert_allclose(out, defended.predict(x_test[:50]), rtol=1e-4, atol=1e-4)
        x = torch.as_tensor(x_test[:4]).requires_grad_(True)
        torch.nn.functional.cross_entropy(module(x), torch.zeros(4, dtype=torch.long)).backward()
        assert x.grad is not None and x.grad.abs().sum() > 0  # differentiable end to end


def test_an_outside_evaluator_sees_what_art_sees(trained_target, paper_id, mnist_small):
    """torchattacks' PGD on the exported nn.Module breaks the paper's ID as ART's PGD on the classifier does."""
    torchattacks = pytest.importorskip("torchattacks")
    _, _, x_test, y_test = mnist_small
    x, y = x_test[:100], y_test[:100]
    defended = defend(trained_target, paper_id)
    attack = torchattacks.PGD(as_module(defended), eps=0.2, alpha=0.05, steps=10, random_start=True)
    x_adv = attack(torch.as_tensor(x), torch.as_tensor(y)).numpy()
    outside = float((defended.predict(x_adv).argmax(1) == y).mean())
    clean = float((defended.predict(x).argmax(1) == y).mean())
    assert outside < clean - 0.3 and abs(outside - pgd_accuracy(defended, x, y, 0.2)) < 0.15


def test_from_recipe_applies_the_named_keywords_and_overrides(trained_target, mnist_small):
    from art_idfr.training.adaptive import ADAPTIVE_RECIPES

    den = IDFRDenoiser(input_shape=(1, 28, 28), width=0.125, batch_size=32, device_type="cpu", seed=0)
    fr = FeatureRestorer(nb_epochs=1, device_type="cpu", seed=0)
    x_train, y_train, _, _ = mnist_small
    fr.fit(x_train[:64], y_train[:64], classifier=trained_target, denoiser=den,
           attacks=[FastGradientMethod(trained_target, eps=0.1)])
    trainer = AdaptiveDenoiserTrainer.from_recipe("trades_joint", trained_target, den, fr, nb_epochs=1)
    recipe = ADAPTIVE_RECIPES["trades_joint"]
    assert (trainer.eps, trainer.trades_beta, trainer.batch_size) == (recipe["eps"], 6.0, 16)
    assert trainer.train_restorer is True and trainer.restorer is fr
    assert trainer.nb_epochs == 1 and recipe["nb_epochs"] == 2  # the override won; the registry is untouched
    trainer.fit(x_train[:32], y_train[:32])
    assert den.training_info["recipe"] == "trades_joint" and fr.training_info["adaptive"]["recipe"] == "trades_joint"
    plain = AdaptiveDenoiserTrainer.from_recipe("conservative", trained_target, den)
    direct = AdaptiveDenoiserTrainer(trained_target, den)
    assert {k: v for k, v in vars(plain).items() if k not in ("recipe", "_head_classifier", "_classifier")} == \
        {k: v for k, v in vars(direct).items() if k not in ("recipe", "_head_classifier", "_classifier")}


def test_from_recipe_rejects_unknown_names_and_a_missing_restorer(trained_target):
    den = IDFRDenoiser(input_shape=(1, 28, 28), width=0.125, device_type="cpu", seed=0)
    with pytest.raises(ValueError, match="Valid recipes: conservative, trades_joint"):
        AdaptiveDenoiserTrainer.from_recipe("trades-joint", trained_target, den)
    with pytest.raises(ValueError, match="train_restorer=True needs a restorer"):
        AdaptiveDenoiserTrainer.from_recipe("trades_joint", trained_target, den)


def test_a_second_fit_continues_from_the_first(trained_target, mnist_small):
    """fit again = a warm restart: the ID starts from the weights reached and records the first run as its init."""
    x_train, y_train, _, _ = mnist_small
    den = IDFRDenoiser(input_shape=(1, 28, 28), width=0.125, batch_size=32, device_type="cpu", seed=0)
    trainer = AdaptiveDenoiserTrainer(trained_target, den, eps=0.1, attack="fgsm_rs", nb_epochs=1)
    trainer.fit(x_train[:64], y_train[:64])
    after_first = copy.deepcopy(den.network.state_dict())
    trainer.fit(x_train[:64], y_train[:64])
    info = den.training_info
    assert info["algorithm"] == "adaptive" and info["init"]["algorithm"] == "adaptive"
    assert any(not torch.equal(after_first[k], v) for k, v in den.network.state_dict().items())


def test_ema_decay_returns_the_moving_average_of_the_steps(trained_target, mnist_small):
    """With ema_decay the ID that comes back is the exponential moving average of its weights after each optimizer
    step (the first step's weights, then lerp by 1 - decay), not the last step's raw weights."""
    x_train, y_train, _, _ = mnist_small
    den = IDFRDenoiser(input_shape=(1, 28, 28), width=0.125, batch_size=32, device_type="cpu", seed=0)
    steps = []
    hook = register_optimizer_step_post_hook(
        lambda opt, args, kwargs: steps.append({k: v.detach().clone() for k, v in den.network.named_parameters()}))
    try:
        AdaptiveDenoiserTrainer(trained_target, den, eps=0.1, attack="fgsm_rs", nb_epochs=1, learning_rate=1e-2,
                                ema_decay=0.5).fit(x_train[:96], y_train[:96])
    finally:
        hook.remove()
    assert len(steps) == 3
    expected = steps[0]
    for raw in steps[1:]:
        expected = {k: 0.5 * v + 0.5 * raw[k] for k, v in expected.items()}
    got = dict(den.network.named_parameters())
    assert all(torch.allclose(got[k], v, atol=1e-6) for k, v in expected.items())
    assert any(not torch.allclose(got[k], v) for k, v in steps[-1].items())
    assert den.training_info["ema_decay"] == 0.5


@pytest.mark.parametrize("attack, radius", [("pgd", 1.0), ("fgsm_rs", 1.0), ("n_fgsm", 3.0)])
def test_inner_attack_budgets(trained_target, attack, radius):
    """PGD and FGSM-RS stay in the ε-ball; N-FGSM starts in the 2ε-ball and is not projected back: up to 3ε."""
    from art_idfr.training.adaptive import _AdaptiveRun

    den = IDFRDenoiser(input_shape=(1, 28, 28), width=0.125, device_type="cpu", seed=0)
    trainer = AdaptiveDenoiserTrainer(trained_target, den, eps=0.05, attack=attack)
    x, y = torch.full((16, 1, 28, 28), 0.5), torch.arange(16) % 10  # mid-grey: the [0, 1] clip never binds
    delta = (_AdaptiveRun(trainer, None).inner_attack(x, y, 0.05) - x).abs().max().item()
    assert (radius - 0.5) * 0.05 < delta <= radius * 0.05 + 1e-6, delta


def test_awp_takes_the_gradient_at_perturbed_weights_and_steps_from_the_unperturbed(trained_target, paper_id,
                                                                                    mnist_small):
    """awp_gamma (Wu et al. 2020): in a step the loss is taken twice in train mode, first at w, then at w + v with
    ‖v‖ = γ‖w‖ for every weight matrix / kernel and biases unmoved; the optimizer then steps from w, not w + v."""
    from torch.optim.optimizer import register_optimizer_step_pre_hook

    x_train, y_train, _, _ = mnist_small
    den = copy.deepcopy(paper_id)  # trained: every layer has weights and gradients (a fresh ID's last conv is 0)
    seen, at_step = [], []

    def snapshot(module, args):
        if module.training:
            seen.append({k: v.detach().clone() for k, v in module.named_parameters()})

    hooks = [den.network.register_forward_pre_hook(snapshot), register_optimizer_step_pre_hook(
        lambda opt, args, kwargs: at_step.append({k: v.detach().clone() for k, v in den.network.named_parameters()}))]
    try:
        AdaptiveDenoiserTrainer(trained_target, den, eps=0.1, attack="fgsm_rs", nb_epochs=1, learning_rate=1e-2,
                                batch_size=32, awp_gamma=0.05).fit(x_train[:32], y_train[:32])
    finally:
        for hook in hooks:
            hook.remove()
    assert len(seen) == 2 and len(at_step) == 1  # one step: the ascent at w, the loss at w + v
    w, w_v = seen
    moved = [k for k in w if not torch.equal(w[k], w_v[k])]
    assert len(moved) == sum(v.dim() > 1 for v in w.values())  # every weight matrix / kernel, nothing else
    for k in moved:
        assert float((w_v[k] - w[k]).norm()) == pytest.approx(0.05 * float(w[k].norm()), rel=1e-4)
    assert all(torch.equal(w[k], at_step[0][k]) for k in w)  # the step starts from w
    assert den.training_info["awp_gamma"] == 0.05


def _defended_trades_run(trained_target, paper_id, **kwargs):
    from art_idfr.training.adaptive import _AdaptiveRun

    den = copy.deepcopy(paper_id)
    trainer = AdaptiveDenoiserTrainer(trained_target, den, eps=0.1, max_iter=3, trades_beta=2.0,
                                      trades_reference="defended", identity_weight=0.0, **kwargs)
    return _AdaptiveRun(trainer, None), den


def test_trades_defended_reference_is_zhang_et_al_loss_with_the_gradient_through_the_clean_branch(
        trained_target, paper_id, mnist_small):
    """trades_reference="defended", adversarial_weight=0: L = CE(g(x), y) + β·KL(g(x) ‖ g(x_adv)) with g the
    defended classifier (TRADES), one BN batch, and the gradient flows through the clean reference too."""
    import torch.nn.functional as F
    from art_idfr.embedding import target_logits

    x_train, y_train, _, _ = mnist_small
    run, den = _defended_trades_run(trained_target, paper_id, adversarial_weight=0.0)
    xb, yb = torch.as_tensor(x_train[:16]), torch.as_tensor(y_train[:16]).long()
    x_adv = (xb + 0.1 * torch.sign(torch.randn(xb.shape, generator=torch.Generator().manual_seed(0)))).clamp(0, 1)
    den.network.train()
    run.ddp_net = den.network

    def grads(loss):
        return torch.autograd.grad(loss, list(den.network.parameters()), retain_graph=True)

    got, _ = run.batch_loss(xb, yb, x_adv, None)
    lg = target_logits(run.clf, den.denoise_nchw(torch.cat([x_adv, xb]), batch_size=32), skip=run.skip)

    def trades(reference):
        return F.cross_entropy(lg[16:], yb) + 2.0 * F.kl_div(F.log_softmax(lg[:16], 1), reference, reduction="batchmean")

    by_hand, detached = trades(F.softmax(lg[16:], 1)), trades(F.softmax(lg[16:], 1).detach())
    assert float(got.detach()) == pytest.approx(float(by_hand.detach()), rel=1e-5)
    g_got, g_hand, g_detached = grads(got), grads(by_hand), grads(detached)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(g_got, g_hand))
    assert any(not torch.allclose(a, b, atol=1e-6) for a, b in zip(g_got, g_detached))


def test_trades_defended_inner_attack_ascends_the_kl_to_the_defended_clean_prediction(trained_target, paper_id,
                                                                                     mnist_small):
    """The inner PGD of TRADES maximises KL(g(x) ‖ g(x')), not the CE: it is PGD on that KL from the same start, and
    it raises the KL above the random start's."""
    import torch.nn.functional as F

    x_train, y_train, _, _ = mnist_small
    run, den = _defended_trades_run(trained_target, paper_id)
    x, y = torch.as_tensor(x_train[:32]), torch.as_tensor(y_train[:32]).long()
    noise = torch.rand(x.shape, generator=torch.Generator().manual_seed(1))
    den.network.eval()
    x_adv = run.inner_attack(x, y, 0.1, noise)
    ref = F.softmax(run.logits(x), 1).detach()
    step = run.t.eps_step
    assert torch.equal(x_adv, run.pgd(x, y, 0.1, steps=3, step=step, noise=noise, reference=ref))
    assert not torch.equal(x_adv, run.pgd(x, y, 0.1, steps=3, step=step, noise=noise))  # not the CE's PGD

    def kl(x_):
        with torch.no_grad():
            return float(F.kl_div(F.log_softmax(run.logits(x_), 1), ref, reduction="batchmean"))

    start = run.pgd(x, y, 0.1, steps=0, step=step, noise=noise)
    assert kl(x_adv) > 2 * kl(start), (kl(start), kl(x_adv))


# ---------------------------------------------------------------------- restorers inside the frozen target (issue 41)
def _state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_inner_restorers_alone_train_and_leave_the_target_bit_identical(trained_target, mnist_small):
    """No ID: low-rank deltas inside the frozen target train against PGD through them; the target never changes."""
    from art_idfr import InnerRestorer

    x_train, y_train, x_test, y_test = mnist_small
    eps, model = 0.2, trained_target.model
    before, bare_pred = _state(model), trained_target.predict(x_test[:100])
    inner = InnerRestorer((1, 28, 28), kind="lora", rank=4, device_type="cpu").build(model)
    white_before = pgd_accuracy(trained_target, x_test[:100], y_test[:100], eps)
    trainer = AdaptiveDenoiserTrainer(trained_target, None, inner=inner, eps=eps, max_iter=3, nb_epochs=3,
                                      batch_size=32, learning_rate=3e-3)
    trainer.fit(x_train[:600], y_train[:600])
    after = _state(model)
    assert all(torch.equal(before[k], after[k]) for k in before)  # weights and BatchNorm statistics bit-identical
    np.testing.assert_array_equal(trained_target.predict(x_test[:100]), bare_pred)  # the bare target unchanged
    defended = trainer.get_classifier()
    white_after = pgd_accuracy(defended, x_test[:100], y_test[:100], eps)
    assert white_after >= white_before + 0.07, (white_before, white_after)  # measured: 0.03 -> 0.13
    assert inner.is_fitted and inner.training_info["inner"]["parameters"] == inner.num_parameters()
    assert inner.training_info["train_denoiser"] is False


@pytest.mark.filterwarnings("ignore:autocast='bf16' on a CPU without native bfloat16")  # the next test's subject
def test_id_inner_and_fr_train_together_under_bf16(trained_target, paper_id, mnist_small):
    from art_idfr import InnerRestorer

    x_train, y_train, _, _ = mnist_small
    fr = FeatureRestorer(nb_epochs=1, device_type="cpu")
    fr.fit(x_train[:128], y_train[:128], classifier=trained_target, denoiser=paper_id,
           attacks=[FastGradientMethod(trained_target, eps=0.1)])
    den, fr = copy.deepcopy(paper_id), copy.deepcopy(fr)
    inner = InnerRestorer((1, 28, 28), kind="adapter", width=0.5, device_type="cpu").build(trained_target.model)
    starts = [_state(net) for net in (den.network, fr.network, inner.network)]
    target_before = _state(trained_target.model)
    trainer = AdaptiveDenoiserTrainer(trained_target, den, fr, inner=inner, train_restorer=True, eps=0.1,
                                      max_iter=2, nb_epochs=1, batch_size=32, autocast="bf16", channels_last=True)
    trainer.fit(x_train[:64], y_train[:64])
    for start, net in zip(starts, (den.network, fr.network, inner.network)):  # all three trained
        assert any(not torch.equal(start[k], v) for k, v in net.state_dict().items())
    assert all(torch.equal(target_before[k], v) for k, v in trained_target.model.state_dict().items())
    assert den.training_info["autocast"] == "bf16" and den.training_info["channels_last"] and inner.is_fitted
    assert all(p.is_contiguous() for p in den.network.parameters())  # the ID's layout is back as it was
    out = as_module(trainer.get_classifier())(torch.as_tensor(x_train[:4]))
    assert out.shape == (4, 10)


@pytest.mark.parametrize("native", [False, True])
def test_bf16_on_a_cpu_without_native_bfloat16_warns(trained_target, paper_id, monkeypatch, native):
    import warnings

    from art_idfr.training import adaptive

    monkeypatch.setattr(adaptive, "cpu_has_native_bf16", lambda: native)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        AdaptiveDenoiserTrainer(trained_target, paper_id, autocast="bf16")
        AdaptiveDenoiserTrainer(trained_target, paper_id)  # float32 never warns
    slow = [w for w in caught if issubclass(w.category, RuntimeWarning) and "native bfloat16" in str(w.message)]
    assert len(slow) == (0 if native else 1)
    assert slow == [] or "Leave autocast=None" in str(slow[0].message)


def test_cpu_has_native_bf16_reads_the_cpu_flags(monkeypatch):
    from art_idfr._utils import cpu_has_native_bf16

    for bf16, amx in ((False, False), (True, False), (False, True)):
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda v=bf16: v)
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda v=amx: v)
        assert cpu_has_native_bf16() is (bf16 or amx)


def test_inner_options_get_clear_errors(trained_target, paper_id):
    from art_idfr import InnerRestorer

    with pytest.raises(ValueError, match="train_inner=True needs inner"):
        AdaptiveDenoiserTrainer(trained_target, paper_id, train_inner=True)
    with pytest.raises(ValueError, match="nothing to train"):
        AdaptiveDenoiserTrainer(trained_target, None)
    with pytest.raises(ValueError, match="autocast"):
        AdaptiveDenoiserTrainer(trained_target, paper_id, autocast="fp8")
    other = InnerRestorer((1, 28, 28), device_type="cpu").build(copy.deepcopy(trained_target.model).apply(
        lambda m: torch.nn.init.zeros_(m.bias) if getattr(m, "bias", None) is not None else None))
    with pytest.raises(ValueError, match="fitted for another model"):
        AdaptiveDenoiserTrainer(trained_target, None, inner=other)
