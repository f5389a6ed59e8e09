"""The ``text`` feature group: a customer's event texts before the cutoff, aggregated.

Reads the per-event numbers that :func:`custseq.text.events.with_text_vectors` added to the events table
(``text_sentiment``, ``text_svd_1``…), from events with ``ts < cutoff`` and a text only:

- ``n_texts``, ``text_sentiment_mean``, ``text_negative_share`` over all texts, and per N of
  ``TextConfig.feature_days`` ``n_texts_last_Nd``, ``text_sentiment_last_Nd``, ``text_negative_share_last_Nd``;
- ``days_since_negative_text``: days from the latest negative text to the as-of day;
- ``text_svd_<i>_recent``: the mean text vector of the last ``TextConfig.recent_texts`` texts.

A text is negative when its sentiment is at or below ``TextConfig.negative_below``. Without texts the count is 0
and the rest is null.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from custseq.config import TextConfig
from custseq.schema import ROW_ID, TEXT_SENTIMENT, quote_ident
from custseq.text.events import vector_columns
from custseq.validate.quarantine import CleanTable


@dataclass(frozen=True)
class TextFeatureSql:
    """The text group's share of the feature query: output columns, one join, and its bound values."""

    selects: tuple[str, ...]
    join: str
    params: dict[str, Any] = field(default_factory=dict)


def text_feature_sql(events: CleanTable | None, cfg: TextConfig) -> TextFeatureSql | None:
    """SQL of the text features over ``events`` (which :func:`with_text_vectors` extended), or None without texts.

    Reads ``$cutoff`` and ``$as_of_day`` of the feature query; its own values are in ``params``.
    """
    columns = vector_columns(events)
    if events is None or not columns:
        return None
    sentiment = quote_ident(TEXT_SENTIMENT)
    negative = f"CAST({sentiment} <= $text_negative AS DOUBLE)"
    aggregates = [
        "count(*) AS n_texts",
        f"avg({sentiment}) AS text_sentiment_mean",
        f"avg({negative}) AS text_negative_share",
        f"CAST($as_of_day - CAST(max(ts) FILTER (WHERE {sentiment} <= $text_negative) AS DATE) AS DOUBLE)"
        " AS days_since_negative_text",
    ]
    selects = ["coalesce(txt.n_texts, 0) AS n_texts", "txt.text_sentiment_mean", "txt.text_negative_share"]
    params: dict[str, Any] = {"text_negative": cfg.negative_below, "text_recent": cfg.recent_texts}
    for d in sorted(set(cfg.feature_days)):
        recent = f"ts >= $cutoff - to_days(CAST($text_w{d} AS INTEGER))"
        aggregates += [
            f"count(*) FILTER (WHERE {recent}) AS n_texts_last_{d}d",
            f"avg({sentiment}) FILTER (WHERE {recent}) AS text_sentiment_last_{d}d",
            f"avg({negative}) FILTER (WHERE {recent}) AS text_negative_share_last_{d}d",
        ]
        selects += [
            f"coalesce(txt.n_texts_last_{d}d, 0) AS n_texts_last_{d}d",
            f"txt.text_sentiment_last_{d}d, txt.text_negative_share_last_{d}d",
        ]
        params[f"text_w{d}"] = d
    selects.append("txt.days_since_negative_text")
    for c in columns[1:]:
        name = quote_ident(f"{c}_recent")
        aggregates.append(f"avg({quote_ident(c)}) FILTER (WHERE k <= $text_recent) AS {name}")
        selects.append(f"txt.{name}")
    join = f"""LEFT JOIN (
    SELECT customer_id, {", ".join(aggregates)}
    FROM (
        SELECT *, row_number() OVER (PARTITION BY customer_id ORDER BY ts DESC, {ROW_ID} DESC) AS k
        FROM {events.sql_name} WHERE ts < $cutoff AND {sentiment} IS NOT NULL
    )
    GROUP BY customer_id
) txt USING (customer_id)"""
    return TextFeatureSql(tuple(selects), join, params)
