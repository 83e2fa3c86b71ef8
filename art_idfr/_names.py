"""
Name registries shared by the library, the experiment side and the command line. Plain tuples with no imports, so
that ``art-idfr --help`` and argument errors answer without loading torch or ART.
"""

#: augmentations of the ID's training batches (``IDFRDenoiser(augment=...)``)
AUGMENTATIONS = ("none", "crop", "crop_flip")

#: target / surrogate architectures of :func:`art_idfr.experiments.models.make_model`
MODEL_NAMES = ("small_cnn", "resnet18_cifar", "vgg16_bn_cifar", "resnet50", "inception_v3")

#: attacks of :func:`art_idfr.experiments.attacks.make_attack`
ATTACK_NAMES = ("fgsm", "bim", "pgd", "cw", "cw-art", "autoattack", "square")
