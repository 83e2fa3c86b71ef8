"""
Name registries shared by the library, the experiment side and the command line: every choice list is defined here
once. Plain tuples with no imports, so that ``art-idfr --help`` and argument errors answer without loading torch
or ART.
"""

#: augmentations of the ID's training batches (``IDFRDenoiser(augment=...)``)
AUGMENTATIONS = ("none", "crop", "crop_flip")

#: training losses of the ID (``IDFRDenoiser(loss=...)``): Eq. 3 cross-entropy, the authors' feature L1, or both
ID_LOSSES = ("ce", "feature", "both")

#: ID networks (``IDFRDenoiser(architecture=...)``): the paper's Table 6 U-Net, or a lighter one for large inputs (not
#: in the paper): "light" = Table 6 at half resolution on a space-to-depth copy (≈ 0.26× the MACs), "slim" = Table 6
#: with a slim decoder (0.42×)
ID_ARCHITECTURES = ("table6", "light", "slim")

#: output layer of the U-Net (``IDFRDenoiser(residual_head=...)``)
RESIDUAL_HEADS = ("linear", "bn_relu")

#: ART's device convention (``device_type=...`` of every component)
DEVICE_TYPES = ("gpu", "cpu")

#: inner attacks of adaptive training (:class:`art_idfr.training.AdaptiveDenoiserTrainer`, not in the paper)
ADAPTIVE_ATTACKS = ("pgd", "fgsm_rs", "n_fgsm")

#: references of adaptive training's TRADES term: the frozen target's clean prediction, or the defended one (TRADES)
TRADES_REFERENCES = ("target", "defended")

#: target / surrogate architectures of :func:`art_idfr.experiments.models.make_model`
MODEL_NAMES = ("small_cnn", "resnet18_cifar", "vgg16_bn_cifar", "resnet50", "inception_v3")

#: attacks of :func:`art_idfr.experiments.attacks.make_attack`
ATTACK_NAMES = ("fgsm", "bim", "pgd", "cw", "cw-art", "autoattack", "square")

#: kinds of restorers inside the target (art_idfr.inner.InnerRestorer): low-rank weight deltas, residual adapters
INNER_KINDS = ("lora", "adapter")
