"""
CIFAR-10 (JPEG q75 copy) at CPU scale (issue: results that stand).

    python benchmarks/cifar10_cpu.py      # needs ../shared/data/cifar10-jpeg.tar.gz or --data-root PATH

Target: a ResNet-18 (CIFAR variant) at width 0.25, the largest of our targets that trains in <= 20 min on 2 CPU
cores here; surrogate: a small CNN (another architecture and seed) for the black-box AEs. ID + FR fitted on ART
FGSM/BIM AEs at 4/255, 8/255 and 16/255 of 3k training images, crafted on the target and on two extra,
independently trained models (a VGG16-BN and another ResNet-18, both width 0.25, own seeds), the ID trained 8 epochs
on randomly cropped and flipped batches (both not in the paper, chosen on the validation split); all defences and
threat models,
FGSM/CW/BIM at eps 4/8/16/32 (/255) on 1,000 test images (white-box on 100, query on 50 of them); all the paper's
defences but TotalVarMin (too slow at this size on a CPU: see results/speed), Fast AT and (issue 42) the paper's
baselines ComDefend, NRP, ADP and SOAP, trained here (`art_idfr.experiments.baselines`; ComDefend / NRP / ADP on the
ID's 3,000 training images for their CPU-preset epochs, 20 / 5 / 20, chosen on Fashion-MNIST's validation split:
benchmarks/NOTES.md; SOAP's ResNet-18 with its rotation head on the whole training set, 2 cosine epochs). From
scratch on 2 idle cores it took 2 h 21 min (8,461 s; 2026-12-08): fits 5,630 s (IDFR 2,789 s without its two AE
sources, SOAP 852, ComDefend 670) and the evaluation 2,776 s (masking checks 1,231). Issue 42's goal is 2 hours: not
met. The run resumes fit by fit and cell by cell (`python benchmarks/run_times.py runs/cifar10_cpu` says where the
time went). The adaptive ID+FR and AutoAttack through the defences live in `cifar10_adaptive.py` /
`cifar10_inner.py`. Two torch threads: give it both cores of a 2-core machine (pass `--threads 1` on a busy one).
Reports go to benchmarks/results/cifar10_cpu/.
"""
import sys

from _run import run

#: target, surrogate and Fast AT (shared with cifar10_adaptive.py, which trains the same models)
MODEL_ARGS = [
    "--preset", "cpu", "--dataset", "cifar10_jpeg", "--seed", "0", "--threads", "2",
    "--model", "resnet18_cifar", "--width", "0.25", "--target-epochs", "4",
    "--surrogate-model", "small_cnn", "--surrogate-width", "1.0", "--surrogate-epochs", "3",
    "--fast-at-epochs", "2",
]
ARGS = MODEL_ARGS + [
    "--id-width", "0.5", "--fr-epochs", "10", "--fit-n", "3000", "--id-identity-weight", "10",
    "--idfr-eps", "4/255,8/255,16/255",
    # random crop + flip of the ID's training batches, 8 epochs instead of 4: +5 to +15 points in every validation
    # attack column, clean unchanged (the ID no longer overfits its fixed AE set; tune_cifar10_jpeg/tune.md)
    "--id-augment", "crop_flip", "--id-epochs", "8",
    # training AEs also from a VGG16-BN (width 0.25, own seed): +13 to +20 points at 16/255 on the validation split,
    # and from a second ResNet-18 (width 0.25, another seed): +1.3 to +6 more in every validation attack column
    # (benchmarks/results/tune_cifar10_jpeg/tune.md); the black-box surrogate (small CNN) is never an AE source
    "--idfr-source-model", "vgg16_bn_cifar,resnet18_cifar", "--idfr-source-width", "0.25",
    "--eps", "4/255,8/255,16/255,32/255", "--test-size", "1000", "--eval-n", "1000",
    "--whitebox-n", "100", "--query-n", "50", "--query-iter", "50",
    # TotalVarMin is left out here: ~2 min per 1,000 3x32x32 images per cell on one core (see results/speed)
    "--defences", "none,id,idfr,feature_squeezing,jpeg25,jpeg50,jpeg75,spatial_smoothing,fast_at,"
                  "comdefend,nrp,adp,soap",
    "--attacks", "fgsm,cw,bim", "--sanity-square-iter", "1000",
    # the gradient-masking checks also through the baselines' white-box rows (BPDA for ComDefend and SOAP, exact for
    # NRP, EOT for ADP)
    "--sanity-defences", "none,id,idfr,fast_at,comdefend,nrp,adp,soap",
    # ADP at noise 0.1, not the paper's 0.25: on CIFAR-10's validation split this brittle target keeps 45.6% clean
    # behind any score network at 0.25 and 63.8% at 0.1, the paper's clean cost (-10 points; benchmarks/NOTES.md)
    "--baselines-adp", "noise_std=0.1",
    # ComDefend at width 0.5, batch 32, Adam 1e-3 annealed to 0 (cosine): the Fashion-MNIST preset (width 0.25,
    # batch 128, 3e-3, constant) spikes and keeps 41.8% clean on CIFAR-10's validation split, width 0.25 at this
    # schedule 57.8%, width 0.5 66.6% (undefended 73.8; the paper's ComDefend costs 6.1) at 2.8x the fit (NOTES.md)
    "--baselines-comdefend", "width=0.5,batch_size=32,learning_rate=0.001,lr_schedule=cosine",
    # SOAP's purification radius 1/255, not the default 8/255: on CIFAR-10's validation split (the fitted SOAP,
    # 500 images; clean / FGSM 16/255 / BIM 8/255 transferred) 8/255 costs 30 clean points (42.4 vs 72.6 without
    # purification) and helps no attack column; 1/255 69.6 / 18.0 / 32.2, 2/255 65.8 / 18.0 / 32.2, none 72.6 /
    # 16.0 / 30.8 (benchmarks/NOTES.md). A test-time setting: the cached fit is reused
    "--baselines-soap-eps", "1/255",
    # SOAP: one purification step and 2 epochs annealed to 0 instead of 5 steps and 4 constant-rate epochs (a fifth of
    # the fit's time measured on the screen, about a quarter of its cells'): on the validation split (500 images,
    # clean / FGSM 16/255 / BIM 8/255 transferred) 2 cosine epochs give 67.4 / 21.6 / 36.4 with 1 step and 67.2 /
    # 21.6 / 36.0 with 5, 4 constant epochs 71.4 / 15.8 / 29.8 with 1 step and 71.4 / 15.6 / 30.8 with 5: stronger in
    # both attack columns, 4 points lower clean (benchmarks/NOTES.md). Fashion-MNIST's preset is the same
    "--baselines-soap-steps", "1", "--baselines-soap-epochs", "2", "--baselines-soap-lr-schedule", "cosine",
]

if __name__ == "__main__":
    sys.exit(run("cifar10_cpu", ARGS))
