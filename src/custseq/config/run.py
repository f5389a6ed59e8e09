"""The settings of a whole run (:class:`RunConfig`), deriving one with another seed, and reading one from a file."""

from __future__ import annotations

import dataclasses
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from custseq.config.convert import config_from_dict
from custseq.config.data import (
    ColumnsConfig,
    EngineConfig,
    FeatureConfig,
    SequenceConfig,
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
from custseq.config.model import BaselineConfig, ModelConfig
from custseq.errors import ConfigError


@dataclass(frozen=True)
class RunConfig:
    """Every setting of a run: the data settings `prepare` needs, and the model `predict` trains."""

    columns: ColumnsConfig = field(default_factory=ColumnsConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)
    window: WindowConfig = field(default_factory=WindowConfig)
    features: FeatureConfig = field(default_factory=FeatureConfig)
    sequence: SequenceConfig = field(default_factory=SequenceConfig)
    engine: EngineConfig = field(default_factory=EngineConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    baselines: BaselineConfig = field(default_factory=BaselineConfig)
    segments: SegmentConfig = field(default_factory=SegmentConfig)
    value_score: ValueScoreConfig = field(default_factory=ValueScoreConfig)
    profit: ProfitConfig = field(default_factory=ProfitConfig)
    actions: ActionConfig = field(default_factory=ActionConfig)
    audit: AuditConfig = field(default_factory=AuditConfig)
    report: ReportConfig = field(default_factory=ReportConfig)


def with_seed(cfg: RunConfig, seed: int | None) -> RunConfig:
    """The config with every training seed set to ``seed`` (unchanged with None)."""
    if seed is None:
        return cfg
    m = cfg.model
    model = dataclasses.replace(
        m,
        pretrain_training=dataclasses.replace(m.pretrain_training, seed=seed),
        finetune_training=dataclasses.replace(m.finetune_training, seed=seed),
    )
    return dataclasses.replace(cfg, model=model)


def load_config(path: Path) -> RunConfig:
    """Read a :class:`RunConfig` from a TOML or JSON file.

    Raises
    ------
    ConfigError
        If the file cannot be read or parsed, or holds unknown settings.
    """
    try:
        text = Path(path).read_text()
    except OSError as e:
        raise ConfigError(f"cannot read config file {path}: {e.strerror}") from None
    try:
        data = json.loads(text) if Path(path).suffix == ".json" else tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(f"config file {path} is not valid {Path(path).suffix.lstrip('.') or 'TOML'}: {e}") from None
    return config_from_dict(RunConfig, data, where=str(path))
