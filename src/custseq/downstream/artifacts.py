"""A head folder: ``head.json`` (what it reads, its task, label, metrics and the custseq model it belongs to) and
the model as data — ``model.txt`` in LightGBM's own text format, or ``linear.json`` coefficients. Nothing is
pickled; loading parses text and checks the model file's SHA-256 first.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import math
import shutil
import tempfile
from pathlib import Path
from typing import Any

from custseq.baselines.boosted import BoostedInputs
from custseq.config.downstream import HeadConfig
from custseq.downstream.head import FittedHead, LightGbmModel, LinearModel
from custseq.errors import ArtifactError, ConfigError
from custseq.models.artifacts import check_replaceable, replace_dir
from custseq.version import __version__

HEAD_FILE = "head.json"
BOOSTER_FILE = "model.txt"
LINEAR_FILE = "linear.json"
HEAD_FORMAT = 1


def save_head(head: FittedHead, path: Path | str) -> Path:
    """Write the head folder atomically (a sibling folder renamed into place); an earlier head there is replaced.

    Raises
    ------
    ArtifactError
        If ``path`` is a file, or a folder that holds other files than a head's.
    """
    path = Path(path)
    check_replaceable(path, HEAD_FILE, "head")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    try:
        tmp.chmod(0o755)
        if isinstance(head.model, LightGbmModel):
            model_file = BOOSTER_FILE
            head.model.booster.save_model(str(tmp / model_file))
        else:
            model_file = LINEAR_FILE
            (tmp / model_file).write_text(json.dumps(head.model.to_json(), indent=1))
        record = _record(head, model_file, _sha256(tmp / model_file))
        (tmp / HEAD_FILE).write_text(json.dumps(record, indent=1, allow_nan=False, ensure_ascii=False) + "\n")
        replace_dir(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path


def load_head(path: Path | str) -> FittedHead:
    """Read a head folder written by :func:`save_head`.

    Raises
    ------
    ArtifactError
        If the folder or a file is missing, of another format, corrupted or changed since it was written.
    """
    path = Path(path)
    file = path / HEAD_FILE
    if not file.is_file():
        raise ArtifactError(f"no head at {path} (no {HEAD_FILE}); pass the --out folder of `custseq fit-head`")
    try:
        record = json.loads(file.read_text())
    except (OSError, ValueError) as e:
        raise ArtifactError(f"{file} cannot be read ({e}); fit the head again") from None
    if not isinstance(record, dict) or record.get("format_version") != HEAD_FORMAT:
        found = record.get("format_version") if isinstance(record, dict) else None
        raise ArtifactError(f"{file} is of format {found!r}; this custseq reads {HEAD_FORMAT}: fit the head again")
    try:
        model_file = path / record["model_file"]
        if record["model_file"] not in (BOOSTER_FILE, LINEAR_FILE) or not model_file.is_file():
            raise ArtifactError(f"{path} lacks its model file {record['model_file']!r}; fit the head again")
        if _sha256(model_file) != record["model_sha256"]:
            raise ArtifactError(f"{model_file} changed since the head was saved (SHA-256 differs); fit the head again")
        model = _load_model(model_file)
        config = HeadConfig(**record["config"])
        return FittedHead(
            config=config, label=str(record["label"]), classes=tuple(record["classes"]),
            inputs=BoostedInputs.from_json(record["inputs"]), kind=record["kind"], model=model,
            model_fingerprint=str(record["model_fingerprint"]), as_of=str(record["as_of"]),
            metrics={k: {m: float("nan") if v is None else float(v) for m, v in d.items()}
                     for k, d in record["metrics"].items()},
            counts={k: int(v) for k, v in record["counts"].items()},
        )  # fmt: skip
    except (KeyError, TypeError, ValueError, ConfigError) as e:
        raise ArtifactError(f"{file} is incomplete or corrupted ({e!r}); fit the head again") from None


def _load_model(model_file: Path) -> LightGbmModel | LinearModel:
    if model_file.name == LINEAR_FILE:
        return LinearModel.from_json(json.loads(model_file.read_text()))
    import lightgbm as lgb

    try:  # LightGBM's text model, parsed: no pickle
        return LightGbmModel(lgb.Booster(model_str=model_file.read_text()))
    except lgb.basic.LightGBMError as e:
        raise ArtifactError(f"{model_file} is not a LightGBM model ({e}); fit the head again") from None


def _record(head: FittedHead, model_file: str, sha256: str) -> dict[str, Any]:
    return {
        "format_version": HEAD_FORMAT,
        "custseq_version": __version__,
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "task": head.config.task,
        "label": head.label,
        "column": head.column,
        "classes": list(head.classes),
        "kind": head.kind,
        "inputs": head.inputs.to_json(),
        "model_fingerprint": head.model_fingerprint,
        "as_of": head.as_of,
        "metrics": {k: {m: v if math.isfinite(v) else None for m, v in d.items()} for k, d in head.metrics.items()},
        "counts": head.counts,
        "config": dataclasses.asdict(head.config),
        "model_file": model_file,
        "model_sha256": sha256,
    }


def _sha256(file: Path) -> str:
    return hashlib.sha256(file.read_bytes()).hexdigest()
