"""The numbers behind the report's figures and tables, computed from what a run folder holds.

Nothing here reads a file or draws: functions take arrays and frames and return arrays and frames, so that a
figure and the table beside it show the same numbers.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from numpy.typing import ArrayLike
from sklearn.decomposition import PCA
from sklearn.manifold import TSNE
from sklearn.metrics import precision_recall_curve, roc_curve

from custseq import metrics
from custseq.io.json_texts import parse_json_texts
from custseq.scoring.segments import segment_table

PRIMARY = "custseq"
BTYD = "bg-nbd"  # the name `custseq evaluate` gives the BG/NBD + Gamma-Gamma baseline


@dataclass(frozen=True)
class Labelled:
    """Customers whose outcome is known, with every method's predictions for them."""

    source: str  # the file they come from
    churned: np.ndarray  # (n,) bool
    value: np.ndarray  # (n,) value over the horizon
    churn: dict[str, np.ndarray]  # method -> (n,) churn probability (NaN where the method has none)
    clv: dict[str, np.ndarray]  # method -> (n,) expected value

    @property
    def primary(self) -> str:
        """custseq when it is there, else the first method."""
        methods = [*self.churn, *self.clv]
        return PRIMARY if PRIMARY in methods else methods[0]

    def best_other(self, task: str) -> str | None:
        """The method other than :attr:`primary` with the best churn AUC (``task="churn"``) or value Gini."""
        scores = self.churn if task == "churn" else self.clv
        metric = metrics.roc_auc if task == "churn" else metrics.normalized_gini
        others = {}
        for method, predicted in scores.items():
            ok = ~np.isnan(predicted)
            if method != self.primary and ok.any():
                actual = self.churned if task == "churn" else self.value
                others[method] = metric(actual[ok], predicted[ok])
        others = {m: s for m, s in others.items() if not math.isnan(s)}
        return max(others, key=others.__getitem__) if others else None


def labelled_from_test(frame: pd.DataFrame, source: str = "test_predictions.parquet") -> Labelled:
    """:class:`Labelled` from ``custseq evaluate``'s test predictions (``<method>:churn_probability`` columns)."""
    churn = {c.split(":", 1)[0]: _floats(frame[c]) for c in frame.columns if c.endswith(":churn_probability")}
    clv = {c.split(":", 1)[0]: _floats(frame[c]) for c in frame.columns if c.endswith(":clv_expected")}
    return _labelled(frame, source, churn, clv)


def labelled_from_validation(frame: pd.DataFrame, source: str = "validation.parquet") -> Labelled:
    """:class:`Labelled` from ``custseq predict``'s validation customers: custseq and, when present, BG/NBD."""
    churn = {PRIMARY: _floats(frame["churn_probability"])}
    clv = {PRIMARY: _floats(frame["clv_expected"])}
    if "btyd_churn_probability" in frame.columns:
        churn[BTYD] = _floats(frame["btyd_churn_probability"])
    if "btyd_clv_expected" in frame.columns:
        clv[BTYD] = _floats(frame["btyd_clv_expected"])
    return _labelled(frame, source, churn, clv)


def _labelled(frame: pd.DataFrame, source: str, churn: dict, clv: dict) -> Labelled:
    if missing := [c for c in ("churned", "value") if c not in frame.columns]:
        raise KeyError(f"{source} lacks column(s) {missing}")
    if not churn and not clv:
        raise KeyError(f"{source} has no prediction columns")
    return Labelled(source, frame["churned"].to_numpy(dtype=bool), _floats(frame["value"]), churn, clv)


def _floats(column: pd.Series) -> np.ndarray:
    return pd.to_numeric(column, errors="coerce").to_numpy(dtype=float)


def known(actual: ArrayLike, predicted: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """The rows where the prediction is not missing."""
    actual, predicted = np.asarray(actual), np.asarray(predicted, dtype=float)
    ok = ~np.isnan(predicted)
    return actual[ok], predicted[ok]


def thin(n: int, max_points: int, keep: ArrayLike = ()) -> np.ndarray:
    """At most about ``max_points`` evenly spread positions of ``range(n)``, first, last and ``keep`` included."""
    if n <= max_points:
        return np.arange(n)
    spread = np.linspace(0, n - 1, max_points).round().astype(int)
    return np.unique(np.concatenate([spread, np.asarray(keep, dtype=int)]))


def roc_points(churned: ArrayLike, score: ArrayLike, max_points: int = 400) -> tuple[np.ndarray, np.ndarray]:
    """False and true positive rates of the ROC curve, thinned to about ``max_points``."""
    fpr, tpr, _ = roc_curve(np.asarray(churned, dtype=int), np.asarray(score, dtype=float))
    keep = thin(len(fpr), max_points)
    return fpr[keep], tpr[keep]


def pr_points(churned: ArrayLike, score: ArrayLike, max_points: int = 400) -> tuple[np.ndarray, np.ndarray]:
    """Recall and precision of the precision-recall curve, thinned to about ``max_points``."""
    precision, recall, _ = precision_recall_curve(np.asarray(churned, dtype=int), np.asarray(score, dtype=float))
    keep = thin(len(recall), max_points)
    return recall[keep], precision[keep]


@dataclass(frozen=True)
class RocPr:
    """One method's ROC and precision-recall curves (thinned for plotting) and their areas."""

    method: str
    customers: int  # with a prediction
    churn_rate: float
    auc: float
    ap: float  # average precision: the area under the precision-recall curve
    fpr: np.ndarray
    tpr: np.ndarray
    recall: np.ndarray
    precision: np.ndarray


@dataclass(frozen=True)
class RocPrCurves:
    """The ROC and precision-recall curves of every method that can have them, on the same customers."""

    curves: tuple[RocPr, ...]  # methods whose known rows hold both classes
    churn_rate: float  # of every customer: the chance line of the precision-recall plot
    rows: tuple[RocPr, ...]  # every method, for the table (curves empty where one class only)


def roc_pr_curves(churned: ArrayLike, scores: Mapping[str, ArrayLike]) -> RocPrCurves:
    """Each method's curves and areas, computed once for the static figure, the interactive one and the table."""
    y_all = np.asarray(churned, dtype=bool)
    rows = []
    for method, score in scores.items():
        y, p = known(y_all, score)
        two_classes = len(np.unique(y)) == 2
        fpr, tpr = roc_points(y, p) if two_classes else (np.zeros(0), np.zeros(0))
        recall, precision = pr_points(y, p) if two_classes else (np.zeros(0), np.zeros(0))
        rate = float(np.mean(y)) if len(y) else math.nan
        rows.append(
            RocPr(method, len(y), rate, metrics.roc_auc(y, p), metrics.pr_auc(y, p), fpr, tpr, recall, precision)
        )
    overall = float(y_all.mean()) if len(y_all) else 0.0
    return RocPrCurves(tuple(r for r in rows if len(r.fpr)), overall, tuple(rows))


def reliability_table(churned: ArrayLike, probability: ArrayLike, bins: int = 10) -> pd.DataFrame:
    """The reliability diagram's numbers: equal-width probability bins with customers, predicted and observed.

    Returns
    -------
    pandas.DataFrame
        One row per bin (empty bins included, with NaN means): ``low``, ``high``, ``customers``,
        ``mean_predicted`` and ``observed`` (the churn rate of its customers).
    """
    y = np.asarray(churned, dtype=float)
    p = np.clip(np.asarray(probability, dtype=float), 0, 1)
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, bins - 1)  # p = 1 falls in the last bin
    counts = np.bincount(which, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_predicted = np.bincount(which, weights=p, minlength=bins) / counts
        observed = np.bincount(which, weights=y, minlength=bins) / counts
    return pd.DataFrame(
        {
            "low": edges[:-1],
            "high": edges[1:],
            "customers": counts,
            "mean_predicted": mean_predicted,
            "observed": observed,
        }
    )


def gain_curve(churned: ArrayLike, score: ArrayLike) -> pd.DataFrame:
    """Cumulative gain and lift of contacting customers in descending order of ``score``.

    Returns
    -------
    pandas.DataFrame
        One row per k = 0 … n: ``share_contacted`` (k / n), ``share_churners`` (churners among the top k over
        all churners) and ``lift`` (``share_churners / share_contacted``; NaN at k = 0).
    """
    y = np.asarray(churned, dtype=float)
    order = np.argsort(-np.asarray(score, dtype=float), kind="stable")
    found = np.concatenate([[0.0], np.cumsum(y[order])])
    share_contacted = np.arange(len(y) + 1) / max(len(y), 1)
    share_churners = found / y.sum() if y.sum() > 0 else np.full(len(found), np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        lift = np.where(share_contacted > 0, share_churners / share_contacted, np.nan)
    return pd.DataFrame({"share_contacted": share_contacted, "share_churners": share_churners, "lift": lift})


def gain_at(curve: pd.DataFrame, shares: tuple[float, ...] = (0.05, 0.1, 0.2, 0.3, 0.5)) -> pd.DataFrame:
    """The rows of a :func:`gain_curve` nearest each share contacted, with that share as ``target``."""
    positions = [int(np.abs(curve["share_contacted"].to_numpy() - s).argmin()) for s in shares]
    return curve.iloc[positions].reset_index(drop=True).assign(target=list(shares))


def value_decile_table(value: ArrayLike, predicted: ArrayLike, groups: int = 10) -> pd.DataFrame:
    """Mean predicted and actual value per decile of predicted value (1 = lowest predictions).

    Ties in the prediction are broken by row order so that the deciles have equal sizes.

    Returns
    -------
    pandas.DataFrame
        ``decile``, ``customers``, ``mean_predicted``, ``mean_actual`` and ``share_of_value`` (the decile's
        share of the total actual value).
    """
    actual = np.asarray(value, dtype=float)
    predicted = np.asarray(predicted, dtype=float)
    n = len(actual)
    rank = np.empty(n, dtype=int)
    rank[np.argsort(predicted, kind="stable")] = np.arange(n)
    decile = rank * groups // max(n, 1) + 1
    frame = pd.DataFrame({"decile": decile, "predicted": predicted, "actual": actual})
    table = frame.groupby("decile").agg(
        customers=("actual", "size"), mean_predicted=("predicted", "mean"), mean_actual=("actual", "mean")
    )
    total = actual.sum()
    table["share_of_value"] = frame.groupby("decile")["actual"].sum() / total if total else np.nan
    return table.reset_index()


def method_metrics(labelled: Labelled) -> pd.DataFrame:
    """Every metric of :func:`custseq.metrics.churn_value_metrics` for each method, on its known rows."""
    rows = {}
    for method in dict.fromkeys([*labelled.churn, *labelled.clv]):
        n = len(labelled.churned)
        churn = labelled.churn.get(method, np.full(n, np.nan))
        clv = labelled.clv.get(method, np.full(n, np.nan))
        ok = ~np.isnan(churn) | ~np.isnan(clv)
        if not ok.any():
            continue
        row = metrics.churn_value_metrics(labelled.churned[ok], churn[ok], labelled.value[ok], clv[ok])
        if np.isnan(churn[ok]).any():
            row.update({k: math.nan for k in ("churn_auc", "churn_pr_auc", "churn_brier", "composite")})
        if np.isnan(clv[ok]).any():
            row.update({k: math.nan for k in row if k.startswith("value_")} | {"composite": math.nan})
        rows[method] = {"customers": int(ok.sum()), **row}
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("method").reset_index()


def stable_sample(customer_ids: ArrayLike, n: int) -> np.ndarray:
    """Positions of at most ``n`` customers chosen by a hash of their id, the same whatever the row order.

    The ``n`` ids with the smallest BLAKE2b hash are taken, so a customer's presence depends only on its id
    and on ``n``, never on where it sits or on a random seed. Returned in ascending position order.
    """
    ids = [str(c) for c in np.asarray(customer_ids, dtype=object)]
    if len(ids) <= n:
        return np.arange(len(ids))
    hashes = np.array([int.from_bytes(hashlib.blake2b(c.encode(), digest_size=8).digest(), "big") for c in ids])
    return np.sort(np.argsort(hashes, kind="stable")[:n])


# half scikit-learn's default, in about a third of the time: on 2,000 customers' embeddings (synthetic, 300k run) the
# neighbours are kept as well (trustworthiness@10 0.958 vs 0.957 at 1,000 iterations; KL 1.69 vs 1.60)
TSNE_ITERATIONS = 500


def embedding_map(embeddings: pd.DataFrame, n: int, seed: int = 0) -> pd.DataFrame:
    """A 2-D t-SNE map of a stable sample of at most ``n`` customers' embeddings.

    The embeddings are reduced to at most 30 dimensions by PCA first (the usual t-SNE preprocessing), then
    mapped by t-SNE initialised with PCA, with ``random_state=seed``, for :data:`TSNE_ITERATIONS` iterations.
    Reference: van der Maaten & Hinton (2008), "Visualizing data using t-SNE", JMLR 9.

    Parameters
    ----------
    embeddings : pandas.DataFrame
        ``customer_id`` and one column per embedding dimension (``e0``, ``e1``, …).
    n : int
        The most customers mapped (t-SNE is quadratic in the customers).
    seed : int
        t-SNE's random state.

    Returns
    -------
    pandas.DataFrame
        ``customer_id``, ``x`` and ``y`` for each sampled customer.

    Raises
    ------
    ValueError
        If fewer than 5 customers or no embedding column are there.
    """
    columns = [c for c in embeddings.columns if c != "customer_id"]
    if len(embeddings) < 5 or not columns:
        raise ValueError(f"a map needs at least 5 customers and one embedding column; got {embeddings.shape}")
    sample = embeddings.iloc[stable_sample(embeddings["customer_id"], n)]
    x = sample[columns].to_numpy(dtype=np.float64)
    dims = min(30, x.shape[1], len(x))
    if dims < x.shape[1]:
        x = PCA(n_components=dims, random_state=seed).fit_transform(x)
    perplexity = min(30.0, (len(x) - 1) / 3)
    tsne = TSNE(n_components=2, init="pca", perplexity=perplexity, max_iter=TSNE_ITERATIONS, random_state=seed)
    xy = tsne.fit_transform(x)
    return pd.DataFrame({"customer_id": sample["customer_id"].astype(str).to_numpy(), "x": xy[:, 0], "y": xy[:, 1]})


def segment_summary(predictions: pd.DataFrame) -> pd.DataFrame:
    """:func:`custseq.scoring.segments.segment_table` plus the mean value score of each segment."""
    table = segment_table(predictions, predictions["segment"])
    if "value_score" in predictions.columns:
        means = predictions.groupby("segment")["value_score"].mean()
        table["mean_value_score"] = table["segment"].map(means)
    return table


def action_counts(predictions: pd.DataFrame, top: int = 8) -> pd.DataFrame:
    """The most common next actions of each kind: how many customers have each among their next actions.

    Returns
    -------
    pandas.DataFrame
        ``kind``, ``action``, ``item``, ``customers``, ``share`` (of all customers), ``first`` (customers for
        whom it is the first action) and ``mean_probability``; at most ``top`` rows per kind, most common first.
    """
    columns = ["kind", "action", "item", "customers", "share", "first", "mean_probability"]
    frame = list_entries(predictions["next_actions"], ("kind", "action", "item", "probability"))
    if not len(frame):
        return pd.DataFrame(columns=columns)
    frame["first"] = frame["rank"] == 0
    frame["probability"] = pd.to_numeric(frame["probability"], errors="coerce")
    table = frame.groupby(["kind", "action", "item"]).agg(
        customers=("row", "nunique"), first=("first", "sum"), mean_probability=("probability", "mean")
    )
    table["share"] = table["customers"] / max(len(predictions), 1)
    table = table.reset_index().sort_values(
        ["kind", "customers", "action", "item"], ascending=[True, False, True, True]
    )
    return table.groupby("kind").head(top)[columns].reset_index(drop=True)


def item_counts(predictions: pd.DataFrame, top: int = 10) -> pd.DataFrame:
    """The items most often among customers' ``next_items``: ``item``, ``customers``, ``share``."""
    entries = list_entries(predictions["next_items"], ("item", "name"))
    entries["item"] = entries["item"].where(entries["item"] != "", entries["name"])  # no item id: its name
    entries = entries[entries["item"] != ""].drop_duplicates(["row", "item"])
    counts = entries["item"].value_counts()
    table = pd.DataFrame({"item": counts.index.astype(str), "customers": counts.to_numpy()})
    table = table.sort_values(["customers", "item"], ascending=[False, True]).head(top)
    table["share"] = table["customers"] / max(len(predictions), 1)
    return table.reset_index(drop=True)


def list_entries(column: pd.Series, fields: tuple[str, ...]) -> pd.DataFrame:
    """One row per entry of a column of lists of objects (JSON text, parsed lists, or Arrow lists as the report
    reads them): ``row`` (the position of its list), ``rank`` (its place in the list) and ``fields`` ("" where an
    entry lacks a text field). Texts are parsed by Arrow (:func:`custseq.io.json_texts.parse_json_texts`): a
    million customers' plans take seconds."""
    if isinstance(column.dtype, pd.ArrowDtype) and pa.types.is_list(column.dtype.pyarrow_dtype):
        lists = pa.concat_arrays(_chunks(pa.array(column)))  # read as Arrow lists: nothing to parse
    else:
        lists = parse_json_texts([_json_text(v) for v in column.tolist()])
    empty = pd.DataFrame({"row": pd.Series(dtype="int64"), "rank": pd.Series(dtype="int64")} | {f: [] for f in fields})
    if not pa.types.is_list(lists.type) or not pa.types.is_struct(lists.type.value_type):
        return empty
    flat = pc.list_flatten(lists)
    rows = pc.list_parent_indices(lists).to_numpy()
    rank = np.arange(len(rows)) - lists.offsets.to_numpy()[rows]
    frame = pd.DataFrame({"row": rows, "rank": rank})
    names = [f.name for f in lists.type.value_type]
    for name in fields:
        values = flat.field(name) if name in names else pa.nulls(len(flat))
        is_text = pa.types.is_string(values.type) or pa.types.is_null(values.type)
        frame[name] = values.to_pandas().fillna("").astype(str) if is_text else values.to_pandas()
    return frame


def _chunks(array: pa.Array | pa.ChunkedArray) -> list[pa.Array]:
    return array.chunks if isinstance(array, pa.ChunkedArray) else [array]


def _json_text(value: object) -> str | None:
    """A plan or item list as JSON text: texts as they are, parsed lists dumped, missing ones None."""
    if value is None or isinstance(value, str):
        return value or None
    if isinstance(value, float) and math.isnan(value):
        return None
    return json.dumps(
        [dict(e) if isinstance(e, Mapping) else e for e in cast(Iterable[Any], value)], ensure_ascii=False
    )
