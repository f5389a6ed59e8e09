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

from dataclasses import dataclass
from pathlib import Path

from custseq.errors import ArtifactError
from custseq.io.run_files import PREPARE_FILE, QUARANTINE_DIR, PrepareSummary, RunFolder

VOCAB_FILE = "vocab.json"
DAILY_SPEND_FILE = "daily_spend.parquet"
WINDOWS_DIR = "windows"
FEATURES_FILE = "features.parquet"
LABELS_FILE = "labels.parquet"
PROSPECTS_FILE = "prospects.parquet"  # with events: prospects' features (and labels when the window has them)
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
    def prospects(self) -> Path:
        return self.folder / PROSPECTS_FILE

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
            If ``root`` holds no readable prepare.json of this custseq's format.
        """
        root = Path(root)
        return cls.of(root, RunFolder(root).read_prepare_summary())

    @classmethod
    def of(cls, root: Path, summary: PrepareSummary) -> PreparedWindows:
        """The layout that ``summary`` (the prepare.json of ``root``) describes."""
        roles: dict[str, list[WindowFolder]] = {"score": [], "validation": [], "train": []}
        for w in summary.windows:  # written score, validation, then the older training windows
            roles[w.role].append(window_folder(root, w.as_of))
        if len(roles["score"]) != 1:
            raise ArtifactError(f"{root / PREPARE_FILE} lists {len(roles['score'])} scoring windows; run prepare again")
        training = (*roles["validation"], *roles["train"])  # none: window.require_training off
        return cls(root, roles["score"][0], training, summary.horizon_days)

    @property
    def validation(self) -> WindowFolder:
        return self.training[0]

    @property
    def summary_file(self) -> Path:
        return self.root / PREPARE_FILE

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
