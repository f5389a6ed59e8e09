"""The settings of a whole run (:class:`RunConfig`), deriving one with another seed, and reading one from a file."""

from __future__ import annotations

import dataclasses
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from custseq.config.convert import config_from_dict, config_to_dict
from custseq.config.data import (
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
from custseq.config.model import BaselineConfig, ModelConfig
from custseq.config.parsing import parse_date, parse_horizon
from custseq.errors import ConfigError


@dataclass(frozen=True)
class RunConfig:
    """Every setting of a run: the data settings `prepare` needs, and the model `predict` trains."""

    columns: ColumnsConfig = field(default_factory=ColumnsConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)
    window: WindowConfig = field(default_factory=WindowConfig)
    features: FeatureConfig = field(default_factory=FeatureConfig)
    sequence: SequenceConfig = field(default_factory=SequenceConfig)
    text: TextConfig = field(default_factory=TextConfig)
    engine: EngineConfig = field(default_factory=EngineConfig)
    prospects: ProspectConfig = field(default_factory=ProspectConfig)
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


def with_window(cfg: RunConfig, *, as_of: Any = None, horizon: str | int | None = None) -> RunConfig:
    """The config with the as-of date and the horizon set where given (``None`` keeps the config's)."""
    window = cfg.window
    if as_of is not None:
        window = dataclasses.replace(window, as_of=parse_date(as_of, "as-of"))
    if horizon is not None:
        window = dataclasses.replace(window, horizon_days=parse_horizon(horizon))
    return dataclasses.replace(cfg, window=window)


def apply_settings(cfg: Any, changes: dict[str, Any]) -> Any:
    """``cfg`` with typed values set by section: ``{"window": {"horizon_days": 90}, "model": {"encoder": {...}}}``.

    ``None`` values are skipped (an option the user did not give). Nested dicts reach nested sections.

    Raises
    ------
    ConfigError
        On a name that is not a setting of its section.
    """
    known = {f.name for f in dataclasses.fields(cfg)}
    updates = {}
    for name, value in changes.items():
        if name not in known:
            raise ConfigError(f"unknown setting {name!r} of {type(cfg).__name__}; allowed: {sorted(known)}")
        if value is None:
            continue
        current = getattr(cfg, name)
        nested = isinstance(value, dict) and dataclasses.is_dataclass(current)
        updates[name] = apply_settings(current, value) if nested else value
    return dataclasses.replace(cfg, **updates) if updates else cfg


def load_config(path: Path, base: RunConfig | None = None) -> RunConfig:
    """Read a :class:`RunConfig` from a TOML or JSON file; settings it does not name keep ``base``'s values
    (default: :class:`RunConfig`'s defaults).

    Raises
    ------
    ConfigError
        If the file cannot be read or parsed, or holds unknown settings.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"cannot read config file {path}: {e.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(
            f"config file {path} is not UTF-8 text (an encoding problem); save it as UTF-8 and run again"
        ) from None
    try:
        data = json.loads(text) if Path(path).suffix == ".json" else tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(f"config file {path} is not valid {Path(path).suffix.lstrip('.') or 'TOML'}: {e}") from None
    except RecursionError:
        raise ConfigError(
            f"config file {path} is nested too deep (lists or tables inside each other thousands of levels down); "
            "a custseq config has at most three levels, e.g. [model.finetune_training]"
        ) from None
    if base is None:
        return config_from_dict(RunConfig, data, where=str(path))
    return config_from_dict(RunConfig, _deep_merge(config_to_dict(base), data), where=str(path))


def _deep_merge(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in changes.items():
        inner = merged.get(key)
        merged[key] = _deep_merge(inner, value) if isinstance(inner, dict) and isinstance(value, dict) else value
    return merged
