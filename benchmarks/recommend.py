"""Issue 20: item recommendation on custseq's customer embeddings, UCI Online Retail, hit rate@10 against baselines.

Run from the repository root (a few minutes on 2 cores)::

    .venv/bin/python benchmarks/recommend.py

Protocol. ``custseq.predict_run`` trains custseq as a user runs it (default settings, seed 0) as of 2011-09-10,
one 90-day horizon before the data's last day, so it reads rows before the cutoff (2011-09-11 00:00) only; its
embeddings (``embeddings.parquet``) describe every customer with history at the cutoff. The saved model also
embeds the customers as of 2011-06-12 (``custseq.score(..., as_of=...)``), one horizon earlier: that earlier
cutoff, whose following 90 days end before the test cutoff, tunes each method's settings (neighbours, blend
weight) for hit@10; the tuned settings are then applied once at the test cutoff.

For every customer with history at a cutoff, each method ranks the products (StockCodes starting with a digit:
postage, fees and manual lines left out) and proposes 10:

- *popularity*: the products in most orders before the cutoff, the same for everyone;
- *repeat last order*: the last order's products by amount, topped up with popular ones;
- *own history*: the customer's products by recency-weighted order count (half-life 90 days), then popular;
- *embedding kNN*: the products of the customer's most similar customers (cosine of the centred, standardised
  embeddings), each neighbour's products weighted by the similarity; with custseq's embedding (the fine-tuned
  model's, as in embeddings.parquet) and with the pre-trained encoder's (``<model>/next-event``,
  ``custseq.embed``);
- *own history + embedding kNN*: own history (row max = 1) + λ × the kNN scores (row max = 1);
- *purchase kNN* (a reference that needs no custseq): the same neighbours and blend on cosine similarity of the
  customers' product sets instead of the embeddings.

Hit rate@10 = share of the customers who buy within 90 days after the cutoff with at least one of their 10
proposals among the products they bought then. *New products* scores the same ranking with the customer's own
past products removed, against the products they bought for the first time (customers with at least one).
Purchase lines: a customer id, quantity > 0, unit price > 0, no cancellation, exact duplicates once.

The result replaces the section "## Item recommendation on the embeddings (issue 20)" of ``--results``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import sparse

from harness import busy_cpu_seconds, machine_description, wait_for_quiet, write_section  # benchmarks/
from next_actions import MAPPING, ONLINE_RETAIL, is_product, purchase_lines  # benchmarks/

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("torch", "lightgbm", "duckdb", "pandas")
HEADING = "## Item recommendation on the embeddings (issue 20)"
AS_OF, TUNE_AS_OF, HORIZON_DAYS, K = dt.date(2011, 9, 10), dt.date(2011, 6, 12), 90, 10
NEIGHBOURS = (10, 30, 100, 300, 1000)
EMBEDDING, PRETRAINED, PURCHASE = "custseq embedding", "pre-trained embedding", "purchase"
WEIGHTS = (0.0, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0)
HALF_LIFE_DAYS = 90.0


def cutoff_of(as_of: dt.date) -> dt.datetime:
    return dt.datetime.combine(as_of, dt.time()) + dt.timedelta(days=1)


class Cut:
    """One cutoff: its customers (with an embedding and history), products, history matrices and outcomes."""

    def __init__(self, lines: pd.DataFrame, embeddings: pd.DataFrame, as_of: dt.date) -> None:
        cutoff = cutoff_of(as_of)
        before = lines[lines["ts"] < cutoff]
        after = lines[(lines["ts"] >= cutoff) & (lines["ts"] < cutoff + dt.timedelta(days=HORIZON_DAYS))]
        by_id = embeddings.assign(customer_id=embeddings["customer_id"].astype(str)).set_index("customer_id")
        self.ids = sorted(set(by_id.index) & set(before["customer_id"]))
        self.items = sorted(before["item"].unique())
        row = {c: i for i, c in enumerate(self.ids)}
        col = {p: j for j, p in enumerate(self.items)}
        orders = before[before["customer_id"].isin(row)].drop_duplicates(["customer_id", "order_id", "item"])
        age = (cutoff - orders["ts"]).dt.total_seconds().to_numpy() / 86_400
        r, c = orders["customer_id"].map(row).to_numpy(), orders["item"].map(col).to_numpy()
        shape = (len(self.ids), len(self.items))
        self.counts = sparse.csr_matrix((np.ones(len(r)), (r, c)), shape=shape)  # orders holding the item
        self.recent = sparse.csr_matrix((0.5 ** (age / HALF_LIFE_DAYS), (r, c)), shape=shape)
        self.bought = (self.counts > 0).astype(np.float64).tocsr()
        all_orders = before.drop_duplicates(["order_id", "item"])["item"].value_counts()
        self.popularity = all_orders.reindex(self.items).fillna(0).to_numpy(float)
        self.embeddings = by_id.loc[self.ids].to_numpy(np.float64)
        self.actual = [set() for _ in self.ids]
        for cid, item in zip(after["customer_id"], after["item"], strict=True):
            if cid in row:
                self.actual[row[cid]].add(item)
        past = before.groupby("customer_id")["item"].agg(set)
        self.new = [a - past.get(c, set()) for c, a in zip(self.ids, self.actual, strict=True)]
        self.last_order = _last_order_items(before, self.ids)


def _last_order_items(before: pd.DataFrame, ids: list[str]) -> list[list[str]]:
    started = before.groupby(["customer_id", "order_id"])["ts"].min().rename("started").reset_index()
    last = started.sort_values(["customer_id", "started", "order_id"]).drop_duplicates("customer_id", keep="last")
    lines = before.merge(last[["customer_id", "order_id"]], on=["customer_id", "order_id"])
    by_item = lines.groupby(["customer_id", "item"], as_index=False)["amount"].sum()
    by_item = by_item.sort_values(["customer_id", "amount", "item"], ascending=[True, False, True])
    own = by_item.groupby("customer_id")["item"].agg(list).to_dict()
    return [own.get(c, []) for c in ids]


def unit_rows(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def embedding_similarity(embeddings: np.ndarray) -> np.ndarray:
    z = embeddings - embeddings.mean(axis=0)
    z = z / np.maximum(z.std(axis=0), 1e-12)
    u = unit_rows(z)
    return u @ u.T  # (N, N)


def similarities_of(cut: Cut, pretrained: pd.DataFrame) -> dict[str, np.ndarray]:
    """Customer-by-customer cosine similarities: custseq's embedding (the fine-tuned model's, as predictions.parquet
    is scored with), the pre-trained encoder's, and the product sets'."""
    by_id = pretrained.assign(customer_id=pretrained["customer_id"].astype(str)).set_index("customer_id")
    return {
        EMBEDDING: embedding_similarity(cut.embeddings),
        PRETRAINED: embedding_similarity(by_id.loc[cut.ids].to_numpy(np.float64)),
        PURCHASE: purchase_similarity(cut),
    }


def purchase_similarity(cut: Cut) -> np.ndarray:
    u = sparse.diags(1 / np.sqrt(np.maximum(np.asarray(cut.bought.sum(axis=1)).ravel(), 1))) @ cut.bought
    return np.asarray((u @ u.T).todense())  # (N, N)


def knn_scores(similarity: np.ndarray, bought: sparse.csr_matrix, neighbours: int) -> np.ndarray:
    """Each customer's products of their ``neighbours`` most similar other customers, weighted by similarity."""
    s = similarity.copy()
    np.fill_diagonal(s, -np.inf)
    keep = np.argpartition(-s, neighbours, axis=1)[:, :neighbours]
    rows = np.repeat(np.arange(len(s)), neighbours)
    weights = np.clip(s[rows, keep.ravel()], 0, None)
    sparse_s = sparse.csr_matrix((weights, (rows, keep.ravel())), shape=s.shape)
    return np.asarray((sparse_s @ bought).todense())


def row_max_scaled(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(x.max(axis=1, keepdims=True), 1e-12)


def top_k(scores: np.ndarray, items: list[str], exclude: sparse.csr_matrix | None = None) -> list[list[str]]:
    """The K best products per row (non-products never; with ``exclude``, the customer's own past ones never)."""
    scores = scores.copy()
    scores[:, [not is_product(i) for i in items]] = -np.inf
    if exclude is not None:
        scores[exclude.nonzero()] = -np.inf
    candidates = np.argpartition(-scores, K, axis=1)[:, :K]
    order = np.argsort(-np.take_along_axis(scores, candidates, axis=1), axis=1, kind="stable")
    best = np.take_along_axis(candidates, order, axis=1)
    return [[items[j] for j in row] for row in best]


def hit_rate(proposals: list[list[str]], actual: list[set[str]]) -> tuple[float, int]:
    pairs = [(p, {a for a in truth if is_product(a)}) for p, truth in zip(proposals, actual, strict=True)]
    pairs = [(p, truth) for p, truth in pairs if truth]
    return float(np.mean([bool(set(p) & truth) for p, truth in pairs])), len(pairs)


def method_scores(cut: Cut, similarities: dict[str, np.ndarray], settings: dict[str, dict]) -> dict[str, np.ndarray]:
    """Every method's (N, items) scores with the given settings; popularity breaks every tie."""
    n = len(cut.ids)
    pop = np.tile(cut.popularity / cut.popularity.max(), (n, 1)) * 1e-3
    own = row_max_scaled(cut.recent.toarray())
    scores = {"popularity": pop * 1e3, "own history (recency-weighted)": own + pop}
    for name, similarity in similarities.items():
        knn = row_max_scaled(knn_scores(similarity, cut.bought, settings[name]["neighbours_alone"]))
        scores[f"{name} kNN"] = knn + pop
        blended = row_max_scaled(knn_scores(similarity, cut.bought, settings[name]["neighbours"]))
        scores[f"own history + {name} kNN"] = own + settings[name]["weight"] * blended + pop
    return scores


def tune(cut: Cut, similarities: dict[str, np.ndarray]) -> dict[str, dict]:
    """Neighbours (kNN alone) and neighbours × weight (blend) with the best hit@10 at the tuning cutoff."""
    n = len(cut.ids)
    pop = np.tile(cut.popularity / cut.popularity.max(), (n, 1)) * 1e-3
    own = row_max_scaled(cut.recent.toarray())
    chosen = {}
    for name, similarity in similarities.items():
        alone, blend = {}, {}
        for neighbours in NEIGHBOURS:
            knn = row_max_scaled(knn_scores(similarity, cut.bought, neighbours))
            alone[neighbours] = hit_rate(top_k(knn + pop, cut.items), cut.actual)[0]
            for weight in WEIGHTS:
                blend[(neighbours, weight)] = hit_rate(top_k(own + weight * knn + pop, cut.items), cut.actual)[0]
        best_alone = max(alone, key=lambda k: alone[k])
        best_blend = max(blend, key=lambda k: blend[k])
        chosen[name] = {
            "neighbours_alone": best_alone, "hit_alone": alone[best_alone],
            "neighbours": best_blend[0], "weight": best_blend[1], "hit_blend": blend[best_blend],
        }  # fmt: skip
    return chosen


def evaluate(cut: Cut, scores: dict[str, np.ndarray]) -> list[dict]:
    rows = []
    for name, s in scores.items():
        hit, customers = hit_rate(top_k(s, cut.items), cut.actual)
        new_hit, new_customers = hit_rate(top_k(s, cut.items, exclude=cut.bought), cut.new)
        rows.append({"method": name, "hit@10": hit, "customers": customers, "new hit@10": new_hit,
                     "new customers": new_customers})  # fmt: skip
    pop = cut.popularity / cut.popularity.max()
    popular = [cut.items[j] for j in np.argsort(-pop, kind="stable") if is_product(cut.items[j])]
    repeat = [([i for i in own if is_product(i)] + [p for p in popular if p not in own])[:K] for own in cut.last_order]
    hit, customers = hit_rate(repeat, cut.actual)
    rows.insert(1, {"method": "repeat last order", "hit@10": hit, "customers": customers, "new hit@10": float("nan"),
                    "new customers": 0})  # fmt: skip
    return rows


def run(tmp: Path, say) -> dict:
    from custseq.api import embed, predict_run, score
    from custseq.config import ColumnsConfig, RunConfig

    timings = {}
    t = time.perf_counter()
    say(f"predict as of {AS_OF} (default settings, seed 0)")
    config = RunConfig(columns=ColumnsConfig(transactions=MAPPING))
    trained = predict_run(ONLINE_RETAIL, as_of=AS_OF.isoformat(), horizon=HORIZON_DAYS, config=config,
                          seed=0, out=tmp / "run")  # fmt: skip
    timings["predict"] = time.perf_counter() - t
    t = time.perf_counter()
    say(f"embeddings as of {TUNE_AS_OF} with the same model")
    earlier = score(tmp / "run" / "model", ONLINE_RETAIL, as_of=TUNE_AS_OF.isoformat())
    timings["score (tuning cutoff)"] = time.perf_counter() - t
    if trained.as_of != AS_OF.isoformat() or earlier.as_of != TUNE_AS_OF.isoformat():
        raise RuntimeError(f"unexpected as-of dates: {trained.as_of}, {earlier.as_of}")
    t = time.perf_counter()
    say("pre-trained encoder's embeddings at both cutoffs")
    encoder = tmp / "run" / "model" / "next-event"
    pretrained = {
        as_of: embed(encoder, ONLINE_RETAIL, out=tmp / f"pre-{as_of}.parquet", as_of=as_of.isoformat(),
                     config=config)[0].to_pandas()
        for as_of in (TUNE_AS_OF, AS_OF)
    }  # fmt: skip
    timings["embed (pre-trained encoder)"] = time.perf_counter() - t
    lines = purchase_lines(ONLINE_RETAIL)
    t = time.perf_counter()
    say("tuning the neighbours and the blend at the earlier cutoff")
    tune_cut = Cut(lines, earlier.embeddings, TUNE_AS_OF)
    settings = tune(tune_cut, similarities_of(tune_cut, pretrained[TUNE_AS_OF]))
    timings["tune"] = time.perf_counter() - t
    t = time.perf_counter()
    say("recommending at the test cutoff")
    cut = Cut(lines, trained.embeddings, AS_OF)
    rows = evaluate(cut, method_scores(cut, similarities_of(cut, pretrained[AS_OF]), settings))
    timings["recommend and evaluate"] = time.perf_counter() - t
    return {
        "rows": rows, "settings": {k: {str(a): b for a, b in v.items()} for k, v in settings.items()},
        "customers": len(cut.ids), "tune_customers": len(tune_cut.ids), "products": len(cut.items),
        "embedding_dim": int(cut.embeddings.shape[1]), "timings": timings,
        "model_choice": getattr(trained.metrics, "model_choice", None),
    }  # fmt: skip


def section(res: dict, command: str, seconds: float, busy: float, busy_before: float) -> str:
    s = res["settings"]
    lines = [
        HEADING,
        "",
        f"`{command}` — {seconds / 60:.1f} min on {machine_description(PACKAGES)} (CPU only); the machine was busy "
        f"{busy / seconds:.2f} cores on average during the run, this run included (other processes used "
        f"{busy_before:.2f} cores just before it started: other sessions share it).",
        "",
        f"UCI Online Retail. custseq (`predict_run`, default settings, seed 0) trained as of {AS_OF} (cutoff "
        f"{cutoff_of(AS_OF):%Y-%m-%d %H:%M}), {res['embedding_dim']}-dimensional embeddings of the "
        f"{res['customers']:,} customers with history at the cutoff; {res['products']:,} products seen before it. "
        f"Settings tuned for hit@10 at the earlier cutoff (as of {TUNE_AS_OF}, {res['tune_customers']:,} "
        f"customers, embeddings from the same model via `custseq.score(..., as_of=...)` and `custseq.embed`): "
        + "; ".join(
            f"{name} kNN {v['neighbours_alone']} neighbours, own history + {name} kNN {v['neighbours']} "
            f"neighbours and λ = {v['weight']}"
            for name, v in s.items()
        )
        + f". Outcomes: the products each customer bought in the {HORIZON_DAYS} days after the test cutoff. "
        "*custseq embedding*: the fine-tuned churn/value model's (embeddings.parquet); *pre-trained embedding*: "
        "the encoder pre-trained with masked-event and next-event objectives, saved in `<model>/next-event`, "
        "embedded with `custseq.embed`.",
        "",
        "| method | hit@10 | customers | hit@10, new products only | customers with a new product |",
        "|---|---:|---:|---:|---:|",
    ]
    for row in res["rows"]:
        new = "n/a" if np.isnan(row["new hit@10"]) else f"{row['new hit@10']:.3f}"
        new_n = f"{row['new customers']:,}" if row["new customers"] else "n/a"
        lines.append(f"| {row['method']} | {row['hit@10']:.3f} | {row['customers']:,} | {new} | {new_n} |")
    timing = ", ".join(f"{name} {v:.0f} s" for name, v in res["timings"].items())
    lines += ["", f"Run time: {timing}.", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "RESULTS.md")
    parser.add_argument("--max-wait", type=float, default=60.0, help="seconds to wait for a quiet machine")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "src"))
    busy_before = wait_for_quiet(0.3, args.max_wait)
    cpu_before, started = busy_cpu_seconds(), time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="custseq-recommend-") as tmp:
        res = run(Path(tmp), lambda msg: print(msg, flush=True))
    seconds = time.perf_counter() - started
    busy = busy_cpu_seconds() - cpu_before
    out = ROOT / "benchmarks" / "out" / "recommend.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1, default=str))
    command = " ".join(shlex.quote(a) for a in [".venv/bin/python", "benchmarks/recommend.py", *sys.argv[1:]])
    write_section(args.results, section(res, command, seconds, busy, busy_before), HEADING)


if __name__ == "__main__":
    main()
