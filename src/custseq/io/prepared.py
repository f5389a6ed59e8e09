"""The on-disk layout of a ``prepare`` output: its files and its window folders, by role.

::

    prepare.json                 the summary (mapping, row accounting, windows, vocabulary sizes, timings)
    vocab.json                   vocabularies and numeric statistics (fitted on training rows only)
    daily_spend.parquet          net spend per customer and day before the scoring cutoff (cohort forecasts)
    quarantine/<table>.parquet   rejected rows with rule and reason
    windows/<as-of>/features.parquet, labels.parquet, sequences/shard=N/*.parquet

Only this module knows these names: every stage asks a :class:`PreparedWindows` or a :class:`WindowFolder`
for the path it needs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from custseq.errors import ArtifactError

SUMMARY_FILE = "prepare.json"
VOCAB_FILE = "vocab.json"
DAILY_SPEND_FILE = "daily_spend.parquet"
QUARANTINE_DIR = "quarantine"
WINDOWS_DIR = "windows"
FEATURES_FILE = "features.parquet"
LABELS_FILE = "labels.parquet"
SEQUENCES_DIR = "sequences"


@dataclass(frozen=True)
class WindowFolder:
    """One window's outputs: features, labels (when the window is labelled) and sequences."""

    folder: Path  # windows/<as-of>/, or the work folder of a scoring run (same files, no labels)

    @property
    def key(self) -> str:
        """The window's as-of date, as the folder is named."""
        return self.folder.name

    @property
    def features(self) -> Path:
        return self.folder / FEATURES_FILE

    @property
    def labels(self) -> Path:
        return self.folder / LABELS_FILE

    @property
    def sequences(self) -> Path:
        return self.folder / SEQUENCES_DIR

    @property
    def has_labels(self) -> bool:
        return self.labels.exists()


@dataclass(frozen=True)
class PreparedWindows:
    """The window folders of a ``prepare`` output, by role (read back from its prepare.json)."""

    root: Path
    scoring: WindowFolder
    training: tuple[WindowFolder, ...]  # latest first; training[0] is the validation window
    horizon_days: int

    @classmethod
    def read(cls, root: Path | str) -> PreparedWindows:
        """The layout of the ``prepare`` output in ``root``.

        Raises
        ------
        ArtifactError
            If ``root`` holds no readable prepare.json.
        """
        root = Path(root)
        try:
            summary = json.loads((root / SUMMARY_FILE).read_text())
            roles: dict[str, list[WindowFolder]] = {w["role"]: [] for w in summary["windows"]}
            for w in summary["windows"]:  # written score, validation, then the older training windows
                roles[w["role"]].append(window_folder(root, w["as_of"]))
            horizon = int(summary["horizon_days"])
            scoring = roles["score"][0]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ArtifactError(f"{root} is not a prepare output ({type(e).__name__}: {e}); run prepare again") from e
        training = (*roles.get("validation", []), *roles.get("train", []))  # none: window.require_training off
        return cls(root, scoring, training, horizon)

    @property
    def validation(self) -> WindowFolder:
        return self.training[0]

    @property
    def summary_file(self) -> Path:
        return self.root / SUMMARY_FILE

    @property
    def vocab_file(self) -> Path:
        return self.root / VOCAB_FILE

    @property
    def daily_spend_file(self) -> Path:
        return self.root / DAILY_SPEND_FILE

    @property
    def quarantine_dir(self) -> Path:
        return self.root / QUARANTINE_DIR


def window_folder(root: Path, key: str) -> WindowFolder:
    """The folder of the window with as-of date ``key`` in the ``prepare`` output ``root``."""
    return WindowFolder(Path(root) / WINDOWS_DIR / key)
