"""Synthetic transaction logs that behave like real ones, for tests, demos and benchmarks.

Customers follow a BG/NBD-style story (Fader, Hardie & Lee 2005, "Counting your customers the easy
way", Marketing Science 24(2)):

- each customer arrives at some day of the period (later cohorts are larger: the business grows)
  and buys at arrival;
- while alive, the customer buys as a Poisson process with a rate drawn from a Gamma distribution,
  modulated by yearly and weekly seasonality;
- after each purchase the customer drops out with a probability drawn from a Beta distribution,
  so customers churn and most of them are silent by the end;
- the value of each order follows the Gamma-Gamma model (Fader, Hardie & Lee 2005, "RFM and CLV",
  Journal of Marketing Research 42(4); the CDNOW values p = 6.25, q = 3.74, v = 15.44 by default),
  split over 1-4 order lines in proportion to each product's price times quantity;
- products are drawn with Zipf-like popularity, each belongs to one category, and each customer
  has their own channel preference;
- about 2% of rows are refunds: a later row of the same order and product with negative amount
  and quantity.

Everything is vectorised with numpy and drawn from ``np.random.default_rng(seed)``: the same
arguments give the same table. Ten million rows take about ten seconds on two cores and under 2 GiB.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from custseq.errors import ConfigError

__all__ = ["Behaviour", "generate_transactions", "write_transactions"]

SECONDS_PER_DAY = 86_400
CHUNK_CUSTOMERS = 250_000  # customers simulated at once; bounds the temporary arrays
SLICE_ROWS = 1 << 22  # rows per Arrow chunk, so string offsets never overflow int32

# Share of orders by hour of day (local time): quiet at night, peaks at lunch and in the evening.
HOURLY_PROFILE = np.array(
    [1, 0.6, 0.4, 0.3, 0.3, 0.5, 1.2, 2.5, 3.8, 4.6, 5.2, 5.8,
     6.4, 6.0, 5.4, 5.1, 5.2, 5.6, 6.2, 7.0, 7.2, 6.1, 4.2, 2.2],
)  # fmt: skip
# Relative purchase intensity Monday..Sunday.
WEEKDAY_PROFILE = np.array([0.92, 0.95, 0.97, 1.0, 1.08, 1.12, 0.96])
CATEGORY_NAMES = (
    "books", "music", "movies", "games", "electronics", "computers", "phones", "cameras", "audio",
    "home", "kitchen", "garden", "tools", "furniture", "lighting", "bedding", "bath", "cleaning",
    "pets", "baby", "toys", "sports", "outdoor", "fitness", "bikes", "auto", "beauty", "health",
    "grocery", "drinks", "snacks", "fashion", "shoes", "jewelry", "watches", "bags", "office",
    "crafts", "party", "gifts",
)  # fmt: skip


@dataclass(frozen=True)
class Behaviour:
    """Parameters of the customer population; the defaults give a plausible retail business.

    Rates are per day. Purchase rate λ ~ Gamma(purchase_shape, scale=1/purchase_rate_scale)
    (mean 0.02 a day, one order every ~50 days while alive); dropout after each purchase
    p ~ Beta(dropout_a, dropout_b) (mean 0.12); order value ~ Gamma(spend_p, rate ν),
    ν ~ Gamma(spend_q, rate spend_gamma).
    """

    arrival_growth: float = 1.5  # arrivals ~ Beta(arrival_growth, 1) over the period: later cohorts larger
    purchase_shape: float = 0.9
    purchase_rate_scale: float = 45.0
    dropout_a: float = 1.2
    dropout_b: float = 8.5
    spend_p: float = 6.25
    spend_q: float = 3.74
    spend_gamma: float = 15.44
    lines_per_order: tuple[float, ...] = (0.55, 0.25, 0.13, 0.07)  # P(1 line), ..., P(4 lines)
    extra_quantity_mean: float = 0.3  # quantity = 1 + Poisson(extra_quantity_mean)
    zipf_exponent: float = 1.1
    channel_concentration: float = 0.8  # Dirichlet concentration: smaller = stronger preferences
    refund_rate: float = 0.02  # share of all rows that are refunds
    refund_delay_days: float = 10.0  # mean days from purchase to refund (plus one day)
    yearly_amplitude: float = 0.25  # peak of the yearly cycle (late December) relative to the mean

    def __post_init__(self) -> None:
        for name in ("purchase_shape", "purchase_rate_scale", "dropout_a", "dropout_b", "spend_p", "spend_q"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"Behaviour.{name} must be positive, got {getattr(self, name)}")
        if not 0 <= self.refund_rate < 0.5:
            raise ConfigError(f"Behaviour.refund_rate must be in [0, 0.5), got {self.refund_rate}")
        if abs(sum(self.lines_per_order) - 1) > 1e-9:
            raise ConfigError(f"Behaviour.lines_per_order must sum to 1, got {self.lines_per_order}")


@dataclass(frozen=True)
class _Catalogue:
    """Products, their categories and prices, popularity, channels and the calendar of the period."""

    product_names: list[str]
    category_names: list[str]
    channel_names: list[str]
    product_category: np.ndarray  # (n_products,) int32 category of each product
    product_price: np.ndarray  # (n_products,) float64 list price
    popularity_cdf: np.ndarray  # (n_products,) cumulative draw probability
    channel_share: np.ndarray  # (n_channels,) overall channel mix
    warp: np.ndarray  # (days + 1,) cumulative seasonal intensity at each midnight


@dataclass
class _Rows:
    """One chunk of simulated rows, grouped by customer and in time order within a customer."""

    customer: np.ndarray  # int64 global customer index
    order: np.ndarray  # int64 global order index
    seconds: np.ndarray  # int64 seconds since start
    amount: np.ndarray  # float64
    quantity: np.ndarray  # int64
    product: np.ndarray  # int32
    channel: np.ndarray  # int8
    order_seconds: np.ndarray  # (n_orders,) int64 purchase time of each order of the chunk


def generate_transactions(
    n_rows: int,
    *,
    seed: int = 0,
    start: str = "2022-01-01",
    days: int = 730,
    n_products: int = 2000,
    n_categories: int = 40,
    channels: Sequence[str] = ("web", "app", "store", "phone"),
    behaviour: Behaviour | None = None,
) -> pa.Table:
    """Generate a realistic transaction log of exactly ``n_rows`` rows.

    Parameters
    ----------
    n_rows : int
        Number of rows (order lines and refunds) to return.
    seed : int, default 0
        Seed of ``np.random.default_rng``; equal arguments give equal tables.
    start : str, default "2022-01-01"
        First day of the period (ISO date).
    days : int, default 730
        Length of the period; every ``ts`` lies in ``[start, start + days)``.
    n_products : int, default 2000
        Size of the product catalogue.
    n_categories : int, default 40
        Number of categories; every product belongs to exactly one.
    channels : sequence of str, default ("web", "app", "store", "phone")
        Sales channels, most used first.
    behaviour : Behaviour, optional
        Parameters of the customer population; ``Behaviour()`` when omitted.

    Returns
    -------
    pyarrow.Table
        Columns ``customer_id`` (string, numbered in order of first purchase), ``ts``
        (timestamp[us], second resolution), ``amount`` (float64, net; negative for refunds),
        ``product``, ``category``, ``channel`` (strings), ``quantity`` (int64, negative for
        refunds) and ``order_id`` (string, numbered in time order; lines of one order share it),
        sorted by ``ts``.

    Raises
    ------
    ConfigError
        If ``n_rows``, ``days``, ``n_products``, ``n_categories`` or ``channels`` is invalid.
    """
    _check_arguments(n_rows, days, n_products, n_categories, channels)
    behaviour = behaviour or Behaviour()
    rng = np.random.default_rng(seed)
    catalogue = _make_catalogue(rng, start, days, n_products, n_categories, tuple(channels), behaviour)
    rows = _simulate_until(n_rows, rng, catalogue, days, behaviour)
    return _to_table(rows, catalogue, np.datetime64(start, "us"))


def write_transactions(path: Path, n_rows: int, *, seed: int = 0, fmt: str = "parquet", **kw) -> Path:
    """Generate a transaction log with :func:`generate_transactions` and write it to ``path``.

    Parameters
    ----------
    path : Path
        File to write; missing parent folders are created.
    n_rows : int
        Number of rows.
    seed : int, default 0
        Seed of the generator.
    fmt : {"parquet", "csv"}, default "parquet"
        File format.
    **kw
        Further keyword arguments of :func:`generate_transactions` (``start``, ``days``, ...).

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    ConfigError
        If ``fmt`` is not ``"parquet"`` or ``"csv"``, or an argument of the generator is invalid.
    """
    if fmt not in ("parquet", "csv"):
        raise ConfigError(f"fmt must be 'parquet' or 'csv', got {fmt!r}")
    table = generate_transactions(n_rows, seed=seed, **kw)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "parquet":
        pq.write_table(table, path, compression="zstd")
    else:
        pacsv.write_csv(table, path)
    return path


def _check_arguments(n_rows: int, days: int, n_products: int, n_categories: int, channels: Sequence[str]) -> None:
    for name, value in (("n_rows", n_rows), ("days", days), ("n_products", n_products),
                        ("n_categories", n_categories)):  # fmt: skip
        if not isinstance(value, int | np.integer) or value < 1:
            raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    if n_categories > n_products:
        raise ConfigError(f"n_categories ({n_categories}) cannot exceed n_products ({n_products})")
    if isinstance(channels, str) or not channels or len(set(channels)) != len(channels):
        raise ConfigError(f"channels must be a non-empty sequence of distinct names, got {channels!r}")


def _make_catalogue(
    rng: np.random.Generator,
    start: str,
    days: int,
    n_products: int,
    n_categories: int,
    channels: tuple[str, ...],
    behaviour: Behaviour,
) -> _Catalogue:
    category_names = [
        CATEGORY_NAMES[i] if i < len(CATEGORY_NAMES) else f"category_{i + 1:03d}" for i in range(n_categories)
    ]
    # Category sizes vary; every category gets at least one product.
    category_weight = rng.dirichlet(np.full(n_categories, 2.0))
    product_category = np.concatenate(
        [np.arange(n_categories), rng.choice(n_categories, n_products - n_categories, p=category_weight)]
    ).astype(np.int32)
    rng.shuffle(product_category)
    category_median = rng.lognormal(np.log(18.0), 0.7, n_categories)
    product_price = np.round(category_median[product_category] * rng.lognormal(0.0, 0.45, n_products), 2)
    popularity = 1.0 / np.arange(1, n_products + 1) ** behaviour.zipf_exponent
    popularity = rng.permutation(popularity)  # popular products are spread over ids and categories
    channel_share = 0.5 ** np.arange(len(channels))
    return _Catalogue(
        product_names=[f"P{i:0{max(5, len(str(n_products)))}d}" for i in range(1, n_products + 1)],
        category_names=category_names,
        channel_names=list(channels),
        product_category=product_category,
        product_price=np.maximum(product_price, 0.5),
        popularity_cdf=np.cumsum(popularity) / popularity.sum(),
        channel_share=channel_share / channel_share.sum(),
        warp=_seasonal_warp(start, days, behaviour.yearly_amplitude),
    )


def _seasonal_warp(start: str, days: int, yearly_amplitude: float) -> np.ndarray:
    """Cumulative purchase intensity at each midnight, normalised to mean 1 a day.

    A Poisson process with intensity λ s(t) is a unit-rate-λ process in the warped clock
    W(t) = ∫ s; simulating in W and mapping back with ``np.interp`` gives seasonality for free.
    """
    dates = np.datetime64(start, "D") + np.arange(days)
    weekday = (dates.astype(np.int64) + 3) % 7  # 1970-01-01 was a Thursday; 0 = Monday
    day_of_year = (dates - dates.astype("datetime64[Y]")).astype(np.int64)
    yearly = 1.0 + yearly_amplitude * np.cos(2 * np.pi * (day_of_year - 355) / 365.25)
    intensity = yearly * WEEKDAY_PROFILE[weekday]
    intensity /= intensity.mean()
    return np.concatenate([[0.0], np.cumsum(intensity)])


def _simulate_until(
    n_rows: int, rng: np.random.Generator, catalogue: _Catalogue, days: int, behaviour: Behaviour
) -> _Rows:
    """Simulate chunks of customers until there are at least ``n_rows`` rows, then keep the first ``n_rows``.

    Customers are i.i.d., so dropping the surplus customers of the last chunk biases nothing; only the
    last kept customer may lose its latest rows.
    """
    chunks: list[_Rows] = []
    total_rows = total_customers = total_orders = 0
    n_customers = int(np.clip(n_rows // 6, 64, CHUNK_CUSTOMERS))
    while total_rows < n_rows:
        chunk = _simulate_chunk(rng.spawn(1)[0], n_customers, total_customers, total_orders, catalogue, days, behaviour)
        chunks.append(chunk)
        total_rows += len(chunk.customer)
        total_customers += n_customers
        total_orders += len(chunk.order_seconds)
        rows_per_customer = max(total_rows / total_customers, 1.0)
        n_customers = int(np.clip(1.1 * (n_rows - total_rows) / rows_per_customer + 64, 64, CHUNK_CUSTOMERS))
    return _concatenate(chunks, n_rows)


def _simulate_chunk(
    rng: np.random.Generator,
    n_customers: int,
    first_customer: int,
    first_order: int,
    catalogue: _Catalogue,
    days: int,
    behaviour: Behaviour,
) -> _Rows:
    order_customer, order_seconds = _simulate_orders(rng, n_customers, catalogue.warp, days, behaviour)
    n_orders = len(order_customer)
    # Gamma-Gamma spend: each customer has a mean order value p/ν; orders scatter around it.
    nu = rng.gamma(behaviour.spend_q, 1.0 / behaviour.spend_gamma, n_customers)
    order_value = rng.gamma(behaviour.spend_p, 1.0 / nu[order_customer])
    order_channel = _draw_channels(rng, n_customers, order_customer, catalogue, behaviour)

    lines_per_order = 1 + _draw_categorical(rng, np.asarray(behaviour.lines_per_order), n_orders)
    line_order = np.repeat(np.arange(n_orders), lines_per_order)
    n_lines = len(line_order)
    product = np.searchsorted(catalogue.popularity_cdf, rng.random(n_lines), side="right").astype(np.int32)
    product = np.minimum(product, len(catalogue.popularity_cdf) - 1)
    quantity = 1 + rng.poisson(behaviour.extra_quantity_mean, n_lines)
    # A product appears once per order, as on a real receipt: a second draw adds to its quantity.
    n_products = len(catalogue.popularity_cdf)
    line_key, line_of_draw = np.unique(line_order * n_products + product, return_inverse=True)
    quantity = np.bincount(line_of_draw, quantity).astype(np.int64)
    line_order, product = line_key // n_products, (line_key % n_products).astype(np.int32)
    n_lines = len(line_order)
    weight = catalogue.product_price[product] * quantity
    amount = order_value[line_order] * weight / np.bincount(line_order, weight, n_orders)[line_order]
    amount = np.maximum(np.round(amount, 2), 0.01)
    seconds = order_seconds[line_order]

    # Refunds: a later row for the same order line with negative amount and quantity.
    refunded = np.flatnonzero(rng.random(n_lines) < behaviour.refund_rate / (1 - behaviour.refund_rate))
    delay = SECONDS_PER_DAY * (1 + rng.exponential(behaviour.refund_delay_days, len(refunded)))
    refund_seconds = seconds[refunded] + delay.astype(np.int64)
    keep = refund_seconds < days * SECONDS_PER_DAY
    refunded, refund_seconds = refunded[keep], refund_seconds[keep]

    line_order = np.concatenate([line_order, line_order[refunded]])
    seconds = np.concatenate([seconds, refund_seconds])
    customer = order_customer[line_order]
    # Group rows by customer, in time order within each customer (stable: lines keep their order).
    by_customer = np.argsort(customer.astype(np.int64) * (days + 1) * SECONDS_PER_DAY + seconds, kind="stable")
    line_order = line_order[by_customer]
    return _Rows(
        customer=customer[by_customer].astype(np.int64) + first_customer,
        order=line_order.astype(np.int64) + first_order,
        seconds=seconds[by_customer],
        amount=np.concatenate([amount, -amount[refunded]])[by_customer],
        quantity=np.concatenate([quantity, -quantity[refunded]])[by_customer],
        product=np.concatenate([product, product[refunded]])[by_customer],
        channel=order_channel[line_order],
        order_seconds=order_seconds,
    )


def _simulate_orders(
    rng: np.random.Generator, n_customers: int, warp: np.ndarray, days: int, behaviour: Behaviour
) -> tuple[np.ndarray, np.ndarray]:
    """Draw every customer's orders: their customer (sorted) and time in seconds since the start.

    In the warped clock the period is ``[0, horizon)``. A customer arriving at ``a`` buys at ``a`` and
    then at the points of a Poisson(λ) process on ``(a, horizon)`` until they drop out after
    a Geometric(p)-th purchase. The first k of the M points in the window are the first k order
    statistics of M uniforms, drawn as cumulative sums of exponentials over their total.
    """
    horizon = warp[-1]
    arrival = horizon * rng.beta(behaviour.arrival_growth, 1.0, n_customers)
    rate = rng.gamma(behaviour.purchase_shape, 1.0 / behaviour.purchase_rate_scale, n_customers)
    dropout = rng.beta(behaviour.dropout_a, behaviour.dropout_b, n_customers)
    purchases_before_dropout = rng.geometric(dropout)  # >= 1, the first purchase included
    in_window = rng.poisson(rate * (horizon - arrival))
    repeats = np.minimum(purchases_before_dropout - 1, in_window)

    n_orders = 1 + repeats
    first = np.concatenate([[0], np.cumsum(n_orders)[:-1]])  # position of each customer's first order
    spacing = rng.exponential(1.0, int(repeats.sum()))
    csum = np.cumsum(spacing)
    repeat_customer = np.repeat(np.arange(n_customers), repeats)
    start_of = np.concatenate([[0], np.cumsum(repeats)[:-1]])
    base = np.concatenate([[0.0], csum])[start_of]
    partial = csum - base[repeat_customer]  # S_1..S_k within each customer
    last = np.where(repeats > 0, np.concatenate([[0.0], csum])[start_of + repeats] - base, 0.0)
    total = last + rng.gamma(in_window - repeats + 1.0)  # S_{M+1} = S_k + Gamma(M + 1 - k)

    order_time = np.empty(int(n_orders.sum()))
    is_first = np.zeros(len(order_time), dtype=bool)
    is_first[first] = True
    order_time[is_first] = arrival
    window = horizon - arrival
    order_time[~is_first] = arrival[repeat_customer] + window[repeat_customer] * partial / total[repeat_customer]
    day_time = np.interp(order_time, warp, np.arange(len(warp), dtype=np.float64))
    day = np.minimum(day_time.astype(np.int64), days - 1)
    hour = _draw_categorical(rng, HOURLY_PROFILE / HOURLY_PROFILE.sum(), len(day))
    seconds = day * SECONDS_PER_DAY + hour * 3600 + rng.integers(0, 3600, len(day))
    return np.repeat(np.arange(n_customers), n_orders), seconds


def _draw_channels(
    rng: np.random.Generator,
    n_customers: int,
    order_customer: np.ndarray,
    catalogue: _Catalogue,
    behaviour: Behaviour,
) -> np.ndarray:
    """Each customer has their own channel mix (Dirichlet around the overall mix); orders draw from it."""
    share = catalogue.channel_share
    preference = rng.dirichlet(behaviour.channel_concentration * len(share) * share, n_customers)
    cumulative = np.cumsum(preference, axis=1)[order_customer]  # (n_orders, n_channels)
    u = rng.random(len(order_customer))[:, None]
    return np.minimum((cumulative < u).sum(axis=1), len(catalogue.channel_share) - 1).astype(np.int8)


def _draw_categorical(rng: np.random.Generator, p: np.ndarray, size: int) -> np.ndarray:
    """``size`` draws of category indices with probabilities ``p`` (faster than ``rng.choice``)."""
    index = np.searchsorted(np.cumsum(p), rng.random(size) * p.sum(), side="right")
    return np.minimum(index, len(p) - 1)


def _concatenate(chunks: list[_Rows], n_rows: int) -> _Rows:
    def cat(name: str) -> np.ndarray:
        return np.concatenate([getattr(c, name) for c in chunks])[:n_rows]

    return _Rows(
        customer=cat("customer"),
        order=cat("order"),
        seconds=cat("seconds"),
        amount=cat("amount"),
        quantity=cat("quantity"),
        product=cat("product"),
        channel=cat("channel"),
        order_seconds=np.concatenate([c.order_seconds for c in chunks]),
    )


def _to_table(rows: _Rows, catalogue: _Catalogue, start: np.datetime64) -> pa.Table:
    customer_number = _rank_customers(rows)
    order_number = _rank_orders(rows)
    by_time = np.argsort(rows.seconds, kind="stable")
    ts = start + rows.seconds[by_time].astype("timedelta64[s]").astype("timedelta64[us]")
    customer_number, order_number = customer_number[by_time], order_number[by_time]
    product = rows.product[by_time]
    columns = {
        "customer_id": _fixed_width_strings("C", customer_number, max(7, len(str(customer_number.max())))),
        "ts": pa.array(ts, pa.timestamp("us")),
        "amount": pa.array(rows.amount[by_time], pa.float64()),
        "product": _lookup(catalogue.product_names, product),
        "category": _lookup(catalogue.category_names, catalogue.product_category[product]),
        "channel": _lookup(catalogue.channel_names, rows.channel[by_time]),
        "quantity": pa.array(rows.quantity[by_time], pa.int64()),
        "order_id": _fixed_width_strings("O", order_number, max(9, len(str(order_number.max())))),
    }
    return pa.table(columns)


def _rank_customers(rows: _Rows) -> np.ndarray:
    """Number customers 1, 2, ... in order of their first purchase, as a sign-up id would be."""
    starts = np.concatenate([[0], np.flatnonzero(np.diff(rows.customer)) + 1])
    rank = np.empty(len(starts), dtype=np.int64)
    rank[np.argsort(rows.seconds[starts], kind="stable")] = np.arange(1, len(starts) + 1)
    return np.repeat(rank, np.diff(np.append(starts, len(rows.customer))))


def _rank_orders(rows: _Rows) -> np.ndarray:
    """Number the orders present 1, 2, ... in order of purchase time."""
    present = np.zeros(len(rows.order_seconds), dtype=bool)
    present[rows.order] = True
    index = np.flatnonzero(present)
    number = np.zeros(len(rows.order_seconds), dtype=np.int64)
    number[index[np.argsort(rows.order_seconds[index], kind="stable")]] = np.arange(1, len(index) + 1)
    return number[rows.order]


def _fixed_width_strings(prefix: str, numbers: np.ndarray, width: int) -> pa.ChunkedArray:
    """``prefix`` + zero-padded ``numbers`` as a string array, built from bytes without Python loops."""
    chunks = []
    for lo in range(0, max(len(numbers), 1), SLICE_ROWS):
        part = numbers[lo : lo + SLICE_ROWS]
        data = np.empty((len(part), len(prefix) + width), dtype=np.uint8)
        data[:, : len(prefix)] = np.frombuffer(prefix.encode(), dtype=np.uint8)
        rest = part.copy()
        for j in range(width):
            data[:, -1 - j] = ord("0") + rest % 10
            rest //= 10
        offsets = np.arange(0, data.size + 1, data.shape[1], dtype=np.int32)
        chunks.append(pa.Array.from_buffers(pa.string(), len(part), [None, pa.py_buffer(offsets), pa.py_buffer(data)]))
    return pa.chunked_array(chunks, pa.string())


def _lookup(names: list[str], index: np.ndarray) -> pa.ChunkedArray:
    """Strings ``names[index]`` as a string array, built in slices so offsets stay within int32."""
    dictionary = pa.array(names, pa.string())
    chunks = [dictionary.take(pa.array(index[lo : lo + SLICE_ROWS])) for lo in range(0, len(index), SLICE_ROWS)]
    return pa.chunked_array(chunks, pa.string())
