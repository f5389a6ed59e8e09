"""What `custseq evaluate` can run: custseq, its network baselines and ablations, and the classic baselines.

Three kinds of method:

* networks — custseq's own pipeline (optional pre-training, then fine-tuning) with a changed
  :class:`~custseq.config.ModelConfig`: custseq itself, the LSTM and hard-sharing baselines, and the
  ablations (``custseq[no-pretraining]`` …);
* baselines — anything behind :class:`custseq.baselines.base.Baseline` (BTYD, linear, trees, naive);
* ``emb+lightgbm`` — LightGBM on custseq's own customer embeddings plus the RFM features (CASPR);
* ``cohort-smoothing`` — exponential smoothing of each signup cohort's revenue, scored on cohort totals.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from custseq.baselines.base import Baseline
from custseq.baselines.simple import Btyd, LastPeriod, ParetoNbd
from custseq.baselines.tabular import LightGBM, LightGBMRich, LogisticRidge, RandomForest, XGBoost
from custseq.config import BaselineConfig, ModelConfig
from custseq.errors import ConfigError

CUSTSEQ = "custseq"
FEATURE_CANDIDATES = ("boosted-features", "btyd")  # the predictor candidates that need no network
EMBEDDINGS = "emb+lightgbm"
COHORT_SMOOTHING = "cohort-smoothing"  # an aggregate forecast per signup cohort, not a per-customer run

ModelVariant = Callable[[ModelConfig], ModelConfig]


def _finetune(**changes: Any) -> ModelVariant:
    return lambda m: dataclasses.replace(m, finetune=dataclasses.replace(m.finetune, **changes))


def _pretrain(**changes: Any) -> ModelVariant:
    return lambda m: dataclasses.replace(m, pretrain=dataclasses.replace(m.pretrain, **changes))


def _no_pretraining(m: ModelConfig) -> ModelConfig:
    return dataclasses.replace(m, pretraining=False)


def _hard_sharing(m: ModelConfig) -> ModelConfig:
    """The same inputs and trunk as custseq, trained from scratch with fixed, equal task weights."""
    return _finetune(weighting="fixed", fixed_weights=(1.0, 1.0))(_no_pretraining(m))


def _lstm(m: ModelConfig) -> ModelConfig:
    """An LSTM over the event sequences alone, from scratch, fixed equal task weights."""
    m = dataclasses.replace(m, encoder=dataclasses.replace(m.encoder, kind="lstm"))
    return _finetune(use_tabular=False, use_sequence=True)(_hard_sharing(m))


def _with_objective(name: str) -> ModelVariant:
    return lambda m: _pretrain(objectives=(*m.pretrain.objectives, name))(m)


def _no_sequence(m: ModelConfig) -> ModelConfig:
    """custseq's predictor with no sequence at all: its boosted head on the rich features, and BTYD (no network)."""
    kept = tuple(c for c in m.predictor.candidates if c in FEATURE_CANDIDATES) or FEATURE_CANDIDATES[:1]
    return dataclasses.replace(m, pretraining=False, predictor=dataclasses.replace(m.predictor, candidates=kept))


# Ablations of issue 7 (and no-sequence, issue 15): each changes one thing of custseq's default model.
ABLATIONS: dict[str, ModelVariant] = {
    "no-pretraining": _no_pretraining,
    "fixed-weights": _finetune(weighting="fixed", fixed_weights=(1.0, 1.0)),
    "no-tabular": _finetune(use_tabular=False, use_sequence=True),
    "mask-30": _pretrain(mask_rate=0.3),
    "no-next": lambda m: _pretrain(objectives=tuple(o for o in m.pretrain.objectives if o != "next"))(m),
    "contrastive": _with_objective("contrastive"),
    "no-sequence": _no_sequence,
}

NETWORKS: dict[str, ModelVariant] = {
    CUSTSEQ: lambda m: m,
    "hard-sharing": _hard_sharing,
    "lstm": _lstm,
}

BASELINES: dict[str, Callable[[int, BaselineConfig], Baseline]] = {
    "last-period": lambda seed, cfg: LastPeriod(),
    "btyd": lambda seed, cfg: Btyd(),
    "pareto-nbd": lambda seed, cfg: ParetoNbd(),
    "logistic": lambda seed, cfg: LogisticRidge(seed=seed),
    "lightgbm": lambda seed, cfg: LightGBM(seed=seed, config=cfg),
    "lightgbm-rich": lambda seed, cfg: LightGBMRich(seed=seed),
    "lightgbm-mae": lambda seed, cfg: LightGBM(value_objective="l1", seed=seed, config=cfg),
    "lightgbm-p50": lambda seed, cfg: LightGBM(value_objective="quantile", quantile_alpha=0.5, seed=seed, config=cfg),
    "lightgbm-p90": lambda seed, cfg: LightGBM(value_objective="quantile", quantile_alpha=0.9, seed=seed, config=cfg),
    "xgboost": lambda seed, cfg: XGBoost(seed=seed, config=cfg),
    "random-forest": lambda seed, cfg: RandomForest(seed=seed, config=cfg),
}
LABEL_FREE = frozenset({"last-period", "btyd", "pareto-nbd"})  # run even when no training window fits
DETERMINISTIC = frozenset({"last-period", "btyd", "pareto-nbd", "logistic"})  # the same result for every seed: run once

METHODS = (*NETWORKS, *BASELINES, EMBEDDINGS, COHORT_SMOOTHING)
DEFAULT_METHODS = METHODS


@dataclass(frozen=True)
class Method:
    """One column of the comparison: a network variant, a baseline, or LightGBM on custseq's embeddings."""

    name: str
    variant: ModelVariant | None = None  # networks
    baseline: Callable[[int, BaselineConfig], Baseline] | None = None  # baselines
    label_fraction: float = 1.0
    transfer: bool = False  # fine-tune from an encoder pre-trained on other data

    @property
    def is_network(self) -> bool:
        return self.variant is not None

    @property
    def final_predictor(self) -> bool:
        """custseq and its variants end with the predictor ``predict`` uses; the network baselines do not."""
        return self.is_network and self.name.split("@")[0].split("[")[0] == CUSTSEQ

    @property
    def needs_labels(self) -> bool:
        return self.name.split("@")[0] not in LABEL_FREE

    @property
    def deterministic(self) -> bool:
        return self.name.split("@")[0] in DETERMINISTIC


def resolve(
    methods: list[str] | tuple[str, ...],
    ablations: list[str] | tuple[str, ...] = (),
    label_fractions: list[float] | tuple[float, ...] = (1.0,),
    transfer: bool = False,
) -> list[Method]:
    """The runs an evaluation makes, in report order.

    Every method runs at every label fraction (named ``name@40%`` below 100%); each ablation adds
    ``custseq[<ablation>]``; ``transfer`` adds ``custseq[transfer]`` and, to compare with, ``custseq`` and
    ``custseq[no-pretraining]``.

    Raises
    ------
    ConfigError
        On an unknown method or ablation, or a label fraction outside (0, 1].
    """
    if unknown := sorted(set(methods) - set(METHODS)):
        raise ConfigError(f"unknown method(s) {unknown}; choose from {list(METHODS)}")
    if unknown := sorted(set(ablations) - set(ABLATIONS)):
        raise ConfigError(f"unknown ablation(s) {unknown}; choose from {list(ABLATIONS)}")
    if not label_fractions or any(not 0 < f <= 1 for f in label_fractions):
        raise ConfigError(f"label fractions must be in (0, 1], got {list(label_fractions)}")
    base: list[Method] = []
    for name in methods:
        if name == COHORT_SMOOTHING:
            continue
        if name in NETWORKS:
            base.append(Method(name, variant=NETWORKS[name]))
        elif name in BASELINES:
            base.append(Method(name, baseline=BASELINES[name]))
        else:
            base.append(Method(name))
    base += [Method(f"{CUSTSEQ}[{a}]", variant=ABLATIONS[a]) for a in ablations]
    if transfer:
        base += [Method(f"{CUSTSEQ}[transfer]", variant=NETWORKS[CUSTSEQ], transfer=True)]
        base += [m for m in (Method(CUSTSEQ, variant=NETWORKS[CUSTSEQ]),
                             Method(f"{CUSTSEQ}[no-pretraining]", variant=ABLATIONS["no-pretraining"]))
                 if m.name not in {b.name for b in base}]  # fmt: skip
    runs = []
    for fraction in sorted(set(label_fractions), reverse=True):
        suffix = "" if fraction == 1 else f"@{fraction:.0%}"
        runs += [dataclasses.replace(m, name=m.name + suffix, label_fraction=fraction) for m in base]
    return runs


def reference_of(name: str) -> str:
    """The custseq run a method is compared with: custseq at the same label fraction."""
    return CUSTSEQ + ("@" + name.split("@")[1] if "@" in name else "")
