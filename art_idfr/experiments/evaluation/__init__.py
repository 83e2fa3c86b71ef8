"""
Evaluation suite of art-idfr (experiment side): IDFR next to ART's preprocessing baselines and Fast AT, on the same
test images, under four labelled threat models (black-box transfer, gray-box, adaptive white-box, query), with
sanity checks and JSON / CSV / Markdown / PNG reports.

Typical use (what ``art-idfr demo --full`` does; ``art-idfr demo`` runs the ``demo`` preset, a smaller scale)::

    from art_idfr.experiments.evaluation import EvalConfig, prepare_data, train_network, fit_idfr, train_fast_at, evaluate

    cfg = EvalConfig.preset("cpu", seed=0).resolved(channels=1)
    data = prepare_data(cfg)
    target, target_meta = train_network(cfg, data, "runs/demo/target")
    surrogate, _ = train_network(cfg, data, "runs/demo/surrogate", role="surrogate")
    denoiser, restorer, _ = fit_idfr(cfg, data, target, "runs/demo/idfr", target_meta=target_meta)
    fast_at, _ = train_fast_at(cfg, data, "runs/demo/fast_at")
    result = evaluate(cfg, data, target, surrogate, denoiser, restorer, fast_at)
    result.write("runs/demo")          # results.json, results.csv, results.md, accuracy_vs_eps.png
    print(result.markdown())
"""
from art_idfr.experiments.evaluation.config import (
    ATTACKS,
    DEFENCES,
    PRESETS,
    SUB_CONFIGS,
    THREAT_MODELS,
    EvalConfig,
    FastATConfig,
    FRConfig,
    IDConfig,
    SourceConfig,
    SurrogateConfig,
    TargetConfig,
    TrainConfig,
    canonical_attack,
    canonical_defence,
    canonical_threat_model,
    eps_label,
    parse_eps,
)
from typing import TYPE_CHECKING

# the rest is imported on first use (PEP 562): `import art_idfr.experiments.evaluation.config` (the CLI's parser) stays light
_EXPORTS = {
    **dict.fromkeys(("ChannelsFirstTotalVarMin", "DefendedClassifier", "build_defences", "wrap_model"),
                    "art_idfr.experiments.evaluation.defences"),
    **dict.fromkeys(("PreparedData", "fit_idfr", "limit_threads", "load_idfr", "load_model_dir", "prepare_data",
                     "save_model_dir", "seeded", "set_up_cpu", "train_fast_at", "train_network", "make_fbf_trainer"),
                    "art_idfr.experiments.evaluation.pipeline"),
    **dict.fromkeys(("REPORT_FILES", "markdown_report", "markdown_tables", "plot_accuracy", "write_reports"),
                    "art_idfr.experiments.evaluation.reports"),
    **dict.fromkeys(("RECORD_FIELDS", "EvaluationResult", "evaluate"), "art_idfr.experiments.evaluation.suite"),
}

if TYPE_CHECKING:
    from art_idfr.experiments.evaluation.defences import ChannelsFirstTotalVarMin, DefendedClassifier, build_defences, wrap_model
    from art_idfr.experiments.evaluation.pipeline import (
        PreparedData,
        fit_idfr,
        limit_threads,
        load_idfr,
        load_model_dir,
        make_fbf_trainer,
        prepare_data,
        save_model_dir,
        seeded,
        set_up_cpu,
        train_fast_at,
        train_network,
    )
    from art_idfr.experiments.evaluation.reports import REPORT_FILES, markdown_report, markdown_tables, plot_accuracy, write_reports
    from art_idfr.experiments.evaluation.suite import RECORD_FIELDS, EvaluationResult, evaluate


def __getattr__(name: str):
    if name in _EXPORTS:
        import importlib

        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'art_idfr.experiments.evaluation' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))


__all__ = [
    "ATTACKS",
    "DEFENCES",
    "PRESETS",
    "THREAT_MODELS",
    "EvalConfig",
    "SUB_CONFIGS",
    "TrainConfig",
    "TargetConfig",
    "SurrogateConfig",
    "SourceConfig",
    "IDConfig",
    "FRConfig",
    "FastATConfig",
    "canonical_attack",
    "canonical_defence",
    "canonical_threat_model",
    "eps_label",
    "parse_eps",
    "ChannelsFirstTotalVarMin",
    "DefendedClassifier",
    "build_defences",
    "wrap_model",
    "PreparedData",
    "fit_idfr",
    "limit_threads",
    "load_idfr",
    "load_model_dir",
    "make_fbf_trainer",
    "prepare_data",
    "save_model_dir",
    "seeded",
    "set_up_cpu",
    "train_fast_at",
    "train_network",
    "REPORT_FILES",
    "markdown_report",
    "markdown_tables",
    "plot_accuracy",
    "write_reports",
    "RECORD_FIELDS",
    "EvaluationResult",
    "evaluate",
]
