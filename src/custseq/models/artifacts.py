"""Model artifacts: a directory of data that rebuilds a model, never code (STYLE P9).

A model directory holds::

    config.json        the settings the model is built from (frozen config dataclasses as JSON)
    vocab.json         vocabularies and numeric statistics (absent when the model has none)
    model.safetensors  the state dict
    manifest.json      custseq version, format version, model type, config and vocabulary hashes,
                       weights sha256, training-data fingerprint, cutoffs, metrics

Loading reads the manifest first, refuses another format version or model type, checks that
config.json, vocab.json and model.safetensors are the ones the manifest was written with, rebuilds
the model from its config with a caller-given ``build`` function and loads the weights with
``strict=True``. Every failure is an :class:`~custseq.errors.ArtifactError` naming the path, what is
wrong and what to do. Nothing is pickled: weights go through safetensors, everything else is JSON.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import os
import shutil
import stat
import tempfile
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import safetensors
import torch
from safetensors.torch import load as load_safetensors_bytes
from safetensors.torch import save as save_safetensors_bytes

from custseq.config import config_from_dict, config_to_dict
from custseq.errors import ArtifactError, CustseqError
from custseq.sequences.vocab import SequenceVocab
from custseq.version import __version__

FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
VOCAB_FILE = "vocab.json"
WEIGHTS_FILE = "model.safetensors"
MANIFEST_FILE = "manifest.json"
ARTIFACT_FILES = (CONFIG_FILE, VOCAB_FILE, WEIGHTS_FILE, MANIFEST_FILE)
MAX_JSON_BYTES = 1 << 30  # 1 GiB: a vocabulary of millions of values fits; a link to /dev/zero does not
MAX_WEIGHTS_BYTES = 1 << 36  # 64 GiB, where the manifest does not record the size (older models)

BuildFn = Callable[[dict[str, Any], SequenceVocab | None], torch.nn.Module]


@dataclass(frozen=True)
class Manifest:
    """What a model directory holds and how it was made; written last, read first."""

    custseq_version: str  # the custseq that wrote the directory
    format_version: int  # layout of the directory; load refuses any other
    model_type: str  # e.g. "pretrained-encoder", "churn-clv"; load may demand one
    config_hash: str  # config_hash() of config.json
    data_fingerprint: str  # of the training data, from data_fingerprint(); "" when not given
    cutoffs: tuple[str, ...]  # ISO dates/instants of the training windows
    metrics: dict[str, float]  # validation metrics at save time
    created_at: str  # ISO instant, UTC
    weights_sha256: str  # of the bytes of model.safetensors: detects corruption and truncation
    vocab_hash: str | None = None  # config_hash() of vocab.json; None = saved without a vocabulary
    extra: dict[str, Any] = field(default_factory=dict)  # free JSON, e.g. the task weighting used
    weights_bytes: int | None = None  # size of model.safetensors, checked before it is read; None = older model

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (cutoffs as a list)."""
        d = dataclasses.asdict(self)
        d["cutoffs"] = list(self.cutoffs)
        return d

    @classmethod
    def from_json(cls, d: Any, where: str = MANIFEST_FILE) -> Manifest:
        """Build a manifest from its JSON dict, checking the format version first.

        Raises
        ------
        ArtifactError
            If ``d`` is not an object, was written by another format version, or lacks a field.
        """
        if not isinstance(d, dict):
            raise ArtifactError(f"{where} must hold a JSON object, got {type(d).__name__}; save the model again")
        if d.get("format_version") != FORMAT_VERSION:
            raise ArtifactError(
                f"{where} was written by format {d.get('format_version')!r} (custseq {d.get('custseq_version', '?')}); "
                f"this custseq ({__version__}) reads {FORMAT_VERSION}. Load it with the custseq version that wrote it, "
                "or train and save the model again"
            )
        names = {f.name for f in dataclasses.fields(cls)}
        required = {f.name for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING} - {"extra"}
        if missing := sorted(required - set(d)):
            raise ArtifactError(f"{where} is incomplete: missing {missing}; save the model again")
        try:
            kwargs = {k: v for k, v in d.items() if k in names}
            kwargs["cutoffs"] = tuple(str(c) for c in d["cutoffs"])
            kwargs["metrics"] = {str(k): float(v) for k, v in d["metrics"].items()}
            kwargs["extra"] = dict(d.get("extra") or {})
            return cls(**kwargs)
        except (TypeError, ValueError, AttributeError) as e:
            raise ArtifactError(f"{where} has a field of the wrong type ({e}); save the model again") from None


def config_hash(config_json: Any) -> str:
    """Hex sha256 of a JSON value in canonical form (sorted keys, no whitespace).

    Reformatting or reordering keys of the file does not change the hash; changing a value does.

    Raises
    ------
    TypeError
        If the value is not JSON (e.g. a dataclass or a tensor).
    """
    text = json.dumps(config_json, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def data_fingerprint(parts: Iterable[str | bytes]) -> str:
    """Hex sha256 over an ordered sequence of parts (e.g. file hashes, row counts, cutoffs as text).

    Each part is length-prefixed, so ``["ab", "c"]`` and ``["a", "bc"]`` differ; a ``str`` counts as
    its UTF-8 bytes. The order of the parts matters.
    """
    h = hashlib.sha256()
    for part in parts:
        b = part.encode("utf-8") if isinstance(part, str) else bytes(part)
        h.update(len(b).to_bytes(8, "little"))
        h.update(b)
    return h.hexdigest()


def configs_from_json(d: Mapping[str, Any], classes: Mapping[str, type]) -> dict[str, Any]:
    """Rebuild the named config dataclasses of a config.json dict (the inverse of what save_model stores).

    Parameters
    ----------
    d : mapping
        The config dict that :func:`load_model` passes to ``build``.
    classes : mapping of str to type
        Section name -> frozen config dataclass, e.g. ``{"encoder": EncoderConfig}``.

    Returns
    -------
    dict
        Every section of ``d``: those named in ``classes`` as dataclass instances (tuples and dates
        restored by :func:`custseq.config.config_from_dict`), the others unchanged.

    Raises
    ------
    ArtifactError
        If a named section is missing or does not build its dataclass (unknown or invalid settings).
    """
    if missing := sorted(set(classes) - set(d)):
        raise ArtifactError(
            f"{CONFIG_FILE} has no section(s) {missing}; it has {sorted(d)}. The model was saved with other "
            "configs than this code expects: use the matching custseq version or train the model again"
        )
    out = dict(d)
    for name, cls in classes.items():
        try:
            out[name] = config_from_dict(cls, d[name], where=f"{CONFIG_FILE} section {name!r}")
        except CustseqError as e:
            raise ArtifactError(f"{e}; use the matching custseq version or train the model again") from None
    return out


def save_model(
    path: Path,
    model: torch.nn.Module,
    config: Any,
    vocab: SequenceVocab | None,
    *,
    model_type: str,
    data_fingerprint: str = "",
    cutoffs: Iterable[str | dt.date] = (),
    metrics: Mapping[str, float] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Manifest:
    """Write a model directory atomically: config.json, vocab.json, model.safetensors, manifest.json.

    Files are written to a temporary sibling directory that then replaces ``path``, so a reader never
    sees a half-written model. An existing model directory at ``path`` is replaced as a whole (any other
    file in it goes too).

    Parameters
    ----------
    path : Path
        The model directory; created with its parents.
    model : torch.nn.Module
        Its ``state_dict()`` is saved. Tensors are copied to the CPU first, so tied (shared) weights are
        stored once per name and re-tied by the model's own constructor at load time.
    config : dataclass instance or dict
        What ``build`` needs to rebuild the model: a frozen config dataclass, or a dict whose values are
        config dataclasses (``{"encoder": EncoderConfig(...)}``) or plain JSON. Stored via
        :func:`custseq.config.config_to_dict`.
    vocab : SequenceVocab or None
        Saved as vocab.json; with None no vocab.json is written.
    model_type : str
        A name of the model class, checked by ``load_model(expected_type=...)``.
    data_fingerprint : str
        Of the training data, e.g. from :func:`data_fingerprint`.
    cutoffs : iterable of str or date
        The training cutoffs; dates and datetimes are stored as ISO text.
    metrics : mapping of str to float, optional
        Validation metrics (NaN is kept, as Python's JSON writes it).
    extra : mapping, optional
        Any further JSON, e.g. the task weighting used.

    Returns
    -------
    Manifest
        The manifest written.

    Raises
    ------
    ArtifactError
        If the config, metrics or extra are not JSON, or ``path`` exists and is not a model directory
        (nothing is overwritten then).
    """
    path = Path(path)
    check_replaceable(path)
    config_json = _config_json(config)
    try:
        extra_json = json.loads(json.dumps(dict(extra or {})))
        metrics_json = {str(k): float(v) for k, v in (metrics or {}).items()}
    except (TypeError, ValueError) as e:
        raise ArtifactError(f"metrics and extra must be JSON (metrics numbers): {e}") from None
    vocab_json = json.loads(json.dumps(vocab.to_json())) if vocab is not None else None
    # Copies on the CPU: contiguous, and no two names share storage (safetensors refuses shared tensors).
    tensors = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in model.state_dict().items()}
    weights = save_safetensors_bytes(tensors, metadata={"format": "pt"})
    manifest = Manifest(
        custseq_version=__version__,
        format_version=FORMAT_VERSION,
        model_type=model_type,
        config_hash=config_hash(config_json),
        data_fingerprint=data_fingerprint,
        cutoffs=tuple(c.isoformat() if isinstance(c, dt.date) else str(c) for c in cutoffs),
        metrics=metrics_json,
        created_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        weights_sha256=hashlib.sha256(weights).hexdigest(),
        weights_bytes=len(weights),
        vocab_hash=config_hash(vocab_json) if vocab_json is not None else None,
        extra=extra_json,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    try:
        tmp.chmod(0o755)  # mkdtemp makes it private; a model directory is readable like any other
        _write(tmp / CONFIG_FILE, _json_bytes(config_json))
        if vocab_json is not None:
            _write(tmp / VOCAB_FILE, _json_bytes(vocab_json))
        _write(tmp / WEIGHTS_FILE, weights)
        _write(tmp / MANIFEST_FILE, _json_bytes(manifest.to_json()))
        replace_dir(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return manifest


def read_manifest(path: Path) -> Manifest:
    """Read and check the manifest of a model directory.

    Raises
    ------
    ArtifactError
        If the directory or its manifest.json is missing or unreadable, or of another format version.
    """
    path = Path(path)
    if not path.is_dir():
        raise ArtifactError(
            f"no model directory at {path}; pass a model folder custseq wrote (`custseq predict` writes "
            "<out>/model, `custseq pretrain` its --out folder)"
        )
    file = path / MANIFEST_FILE
    return Manifest.from_json(_read_json(file), where=str(file))


def load_model(
    path: Path,
    build: BuildFn,
    *,
    expected_type: str | None = None,
    map_location: str | torch.device = "cpu",
) -> tuple[torch.nn.Module, dict[str, Any], SequenceVocab | None, Manifest]:
    """Rebuild a model from its directory: check the manifest, build from config, load weights strictly.

    Parameters
    ----------
    path : Path
        A directory written by :func:`save_model`.
    build : callable
        ``build(config, vocab) -> nn.Module`` makes an untrained model of the saved architecture from the
        config.json dict (rebuild dataclasses with :func:`configs_from_json`) and the vocabulary.
    expected_type : str, optional
        Refuse a model whose manifest has another ``model_type``.
    map_location : str or torch.device
        Where the returned model lives.

    Returns
    -------
    model : torch.nn.Module
        With the saved weights, in eval mode, on ``map_location``.
    config : dict
        The config.json dict, as passed to ``build``.
    vocab : SequenceVocab or None
    manifest : Manifest

    Raises
    ------
    ArtifactError
        If a file is missing or unreadable; the format version or model type differs; config.json or
        vocab.json were edited after saving; model.safetensors is corrupted or truncated; ``build`` fails
        on the config; or the weights' names or shapes do not match the built model.
    """
    path = Path(path)
    manifest = read_manifest(path)
    if expected_type is not None and manifest.model_type != expected_type:
        raise ArtifactError(
            f"{path} holds a {manifest.model_type!r} model, but a {expected_type!r} model is needed; "
            f"pass the directory of a {expected_type!r} model"
        )
    config = _read_json(path / CONFIG_FILE)
    if not isinstance(config, dict):
        raise ArtifactError(f"{path / CONFIG_FILE} must hold a JSON object, got {type(config).__name__}")
    _check_hash(path / CONFIG_FILE, config_hash(config), manifest.config_hash)
    vocab = None
    if manifest.vocab_hash is not None:
        vocab_json = _read_json(path / VOCAB_FILE)
        _check_hash(path / VOCAB_FILE, config_hash(vocab_json), manifest.vocab_hash)
        try:
            vocab = SequenceVocab.from_json(vocab_json)
        except ArtifactError as e:
            raise ArtifactError(f"{path / VOCAB_FILE}: {e}; save the model again") from None
    tensors = _read_weights(path / WEIGHTS_FILE, manifest.weights_sha256, manifest.weights_bytes)
    try:
        model = build(config, vocab)
    except (CustseqError, KeyError, TypeError, ValueError) as e:
        raise ArtifactError(
            f"cannot build a {manifest.model_type!r} model from {path / CONFIG_FILE}: {e!r}. "
            f"It was saved by custseq {manifest.custseq_version}; use a build function that matches it"
        ) from e
    _load_state_dict(model, tensors, path)
    return model.to(map_location).eval(), config, vocab, manifest


def _config_json(config: Any) -> dict[str, Any]:
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        out: Any = config_to_dict(config)
    elif isinstance(config, Mapping):
        out = {
            str(k): config_to_dict(v) if dataclasses.is_dataclass(v) and not isinstance(v, type) else v
            for k, v in config.items()
        }
    else:
        raise ArtifactError(
            f"config must be a config dataclass or a dict of them (or of JSON), got {type(config).__name__}"
        )
    try:
        return json.loads(json.dumps(out))
    except (TypeError, ValueError) as e:
        raise ArtifactError(f"config is not JSON: {e}; store config dataclasses or plain values") from None


def check_replaceable(path: Path, marker: str = MANIFEST_FILE, what: str = "model") -> None:
    """``path`` may be written over: absent, empty, or a folder of this kind (it holds ``marker``).

    Raises
    ------
    ArtifactError
        If it is a file, or a non-empty folder of something else.
    """
    if path.exists() and not path.is_dir():
        raise ArtifactError(f"cannot save a {what} to {path}: it is a file; choose a folder")
    if path.is_dir() and any(path.iterdir()) and not (path / marker).is_file():
        raise ArtifactError(
            f"refusing to overwrite {path}: it is not empty and not a {what} folder (no {marker}); "
            "choose a new folder or empty it first"
        )


def replace_dir(tmp: Path, path: Path) -> None:
    """Put the finished folder ``tmp`` in the place of ``path`` (which may exist), all or nothing."""
    # os.replace cannot put a directory over a non-empty one: move the old one aside, then delete it.
    old = path.parent / f".{path.name}.old-{uuid.uuid4().hex}"
    if path.exists():
        os.replace(path, old)
    try:
        os.replace(tmp, path)
    except OSError:
        if old.exists():
            os.replace(old, path)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _json_bytes(value: Any) -> bytes:
    return (json.dumps(value, indent=1, ensure_ascii=False) + "\n").encode("utf-8")


def _write(file: Path, data: bytes) -> None:
    with open(file, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _read_json(file: Path) -> Any:
    try:
        _check_regular(file, MAX_JSON_BYTES)
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ArtifactError(
            f"{file} is missing: the model directory is incomplete; copy the whole directory or save the model again"
        ) from None
    except (OSError, UnicodeDecodeError) as e:
        raise ArtifactError(f"cannot read {file}: {e}; restore the model directory or save the model again") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ArtifactError(
            f"{file} is not valid JSON ({e}); the file is corrupted: restore it or save the model again"
        ) from None


def _check_regular(file: Path, limit: int) -> int:
    """The size of ``file``, refused before reading when it is not a regular file (a folder, or a link to
    ``/dev/zero`` or a pipe, which would never end) or is larger than any model file custseq writes."""
    info = file.stat()  # follows links; FileNotFoundError is the caller's "missing"
    if not stat.S_ISREG(info.st_mode):
        what = "a folder" if stat.S_ISDIR(info.st_mode) else "not a regular file (a device, pipe or socket)"
        raise ArtifactError(
            f"{file} is {what}; a model directory holds regular files: restore it or save the model again"
        )
    if info.st_size > limit:
        raise ArtifactError(
            f"{file} is {info.st_size:,} bytes, more than custseq reads ({limit:,}); it is not the file custseq "
            "wrote: restore it or save the model again"
        )
    return info.st_size


def _check_hash(file: Path, actual: str, recorded: str) -> None:
    if actual != recorded:
        raise ArtifactError(
            f"{file} does not match the manifest (hash {actual[:12]}…, manifest records {recorded[:12]}…): it was "
            "edited after saving. Restore the original file; to change settings, train and save a new model"
        )


def _read_weights(file: Path, recorded_sha256: str, recorded_bytes: int | None) -> dict[str, torch.Tensor]:
    try:
        size = _check_regular(file, MAX_WEIGHTS_BYTES)
        if recorded_bytes is not None and size > recorded_bytes:  # refused unread; a shorter one fails its hash
            raise ArtifactError(
                f"{file} is {size:,} bytes but the manifest records {recorded_bytes:,}: it was replaced or grew "
                "after saving; restore the file or save the model again"
            )
        data = file.read_bytes()
    except FileNotFoundError:
        raise ArtifactError(
            f"{file} is missing: the model directory is incomplete; copy the whole directory or save the model again"
        ) from None
    except OSError as e:
        raise ArtifactError(f"cannot read {file}: {e}; restore it or save the model again") from None
    if (sha := hashlib.sha256(data).hexdigest()) != recorded_sha256:
        raise ArtifactError(
            f"{file} is corrupted or truncated: its sha256 is {sha[:12]}… ({len(data)} bytes) but the manifest "
            f"records {recorded_sha256[:12]}…; restore the file or save the model again"
        )
    try:
        return load_safetensors_bytes(data)
    except safetensors.SafetensorError as e:
        raise ArtifactError(f"{file} is not a readable safetensors file ({e}); save the model again") from None


def _load_state_dict(model: torch.nn.Module, tensors: dict[str, torch.Tensor], path: Path) -> None:
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    shapes = sorted(
        f"{k}: saved {tuple(tensors[k].shape)}, model {expected[k]}"
        for k in set(expected) & set(tensors)
        if tuple(tensors[k].shape) != expected[k]
    )
    problem = "; ".join(
        f"{what} {items}"
        for what, items in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", shapes))
        if items
    )
    if not problem:
        try:
            model.load_state_dict(tensors, strict=True)
            return
        except RuntimeError as e:
            problem = str(e)
    raise ArtifactError(
        f"the weights in {path / WEIGHTS_FILE} do not fit the model built from its {CONFIG_FILE}: {problem}. "
        "The build function or model code differs from the one that saved it; use the matching version or "
        "train the model again"
    )
