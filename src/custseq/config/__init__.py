"""Every setting custseq has, as frozen dataclasses, and how they are read from files and strings.

Configs are never edited in place: derive a new one with :func:`dataclasses.replace`. A config file
(TOML or JSON) has one section per dataclass field of :class:`RunConfig`, e.g.::

    [columns.transactions]
    customer_id = "CustomerID"
    amount = "Quantity*UnitPrice"

    [window]
    horizon_days = 90

Import every name from here (``from custseq.config import RunConfig``); the modules group them:
:mod:`~custseq.config.data` (the data stages), :mod:`~custseq.config.model` (the models and their
training), :mod:`~custseq.config.decisions` (segments, value score, profit, actions, audit, report),
:mod:`~custseq.config.run` (the whole run and its file), :mod:`~custseq.config.convert` (to and from
dicts) and :mod:`~custseq.config.parsing` (horizons and dates written as text).
"""

from custseq.config.convert import config_from_dict, config_to_dict
from custseq.config.data import (
    FEATURE_GROUPS,
    ColumnsConfig,
    EngineConfig,
    FeatureConfig,
    ProspectConfig,
    SequenceConfig,
    TextConfig,
    ValidationConfig,
    WindowConfig,
)
from custseq.config.decisions import (
    ActionConfig,
    AuditConfig,
    ProfitConfig,
    ReportConfig,
    SegmentConfig,
    ValueScoreConfig,
)
from custseq.config.model import (
    PRETRAIN_OBJECTIVES,
    BaselineConfig,
    EncoderConfig,
    FinetuneConfig,
    ModelConfig,
    PredictorConfig,
    PretrainConfig,
    TrainConfig,
)
from custseq.config.parsing import HORIZON_UNITS_DAYS, parse_date, parse_horizon
from custseq.config.run import RunConfig, apply_settings, load_config, with_seed, with_window

__all__ = [
    "FEATURE_GROUPS",
    "HORIZON_UNITS_DAYS",
    "PRETRAIN_OBJECTIVES",
    "ActionConfig",
    "AuditConfig",
    "BaselineConfig",
    "ColumnsConfig",
    "EncoderConfig",
    "EngineConfig",
    "FeatureConfig",
    "FinetuneConfig",
    "ModelConfig",
    "PredictorConfig",
    "PretrainConfig",
    "ProfitConfig",
    "ProspectConfig",
    "ReportConfig",
    "RunConfig",
    "SegmentConfig",
    "SequenceConfig",
    "TextConfig",
    "TrainConfig",
    "ValidationConfig",
    "ValueScoreConfig",
    "WindowConfig",
    "apply_settings",
    "config_from_dict",
    "config_to_dict",
    "load_config",
    "parse_date",
    "parse_horizon",
    "with_seed",
    "with_window",
]
