"""A synthetic shop with behaviour events, ticket and review texts, and churn effects planted in them.

Each customer arrives on some day, buys at arrival and then as a Poisson process, and lapses (stops buying)
after an exponential lifetime; after that they still log in, browse and write in, less often
(``after_lapse``). While active they log in, view pages, open support tickets and review some purchases. Each
customer who lapses has one of two reasons, and in the ``warning_days`` before the lapse it shows:

- **dissatisfied** (a share ``dissatisfied_share`` of them): their tickets and reviews are complaints (late or
  lost deliveries, damaged goods, refunds) with probability ``complaint_share``, against
  ``base_complaint_share`` for everyone else, while the number of tickets stays the same (``ticket_lift`` 1):
  only what the texts say tells them apart;
- **drifting** (the others): page views are ``browse_lift`` times as frequent, purchases are not (browsing
  without buying);
- satisfied customers write positive reviews.

So purchases alone see a lapse only once it has happened, events see the drifting customers' browsing, and
texts see the dissatisfied customers' complaints. ``ShopEffects(complaint_share=0.1, browse_lift=1)`` plants
nothing. Everything is drawn from ``np.random.default_rng(seed)``, vectorised: the same arguments give the
same tables.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from custseq.errors import ConfigError

__all__ = ["Shop", "ShopEffects", "generate_shop"]

SECONDS_PER_DAY = 86_400
ITEMS = ("parcel", "order", "package", "shoes", "jacket", "lamp", "kettle", "headphones", "backpack", "blender")
# Each template's {slots} are filled from its own options; {item} from ITEMS.
Templates = tuple[tuple[str, dict[str, tuple[str, ...]]], ...]
COMPLAINTS: Templates = (
    ("my {item} {never} and nobody answers", {"never": ("never arrived", "still has not arrived", "is lost")}),
    ("the {item} arrived {late} {mood}", {"late": ("two weeks late", "ten days late", "very late"),
                                          "mood": ("again", "and damaged", "", "this is unacceptable")}),
    ("the {item} arrived {broken}, very disappointed", {"broken": ("damaged", "broken", "wet", "crushed")}),
    ("delivery {failed}, I want a refund", {"failed": ("was late again", "went to the wrong address",
                                                       "was lost by the courier", "never happened")}),
    ("still waiting for my refund for the {item}, {mood}", {"mood": ("no answer from support", "terrible service",
                                                                      "awful experience")}),
    ("terrible service, the courier {did}", {"did": ("never came", "left the parcel in the rain", "lost my order")}),
    ("{bad} quality {item}, {then}", {"bad": ("poor", "bad", "cheap"),
                                      "then": ("returned it", "fell apart", "not as described", "broke after a week")}),
)  # fmt: skip
QUESTIONS: Templates = (
    ("how do I change my {what}", {"what": ("address", "password", "email", "phone number")}),
    ("question about {what}", {"what": ("sizes", "my invoice", "the return policy", "opening hours", "gift cards")}),
    ("can I {do} my order", {"do": ("add an item to", "change the delivery date of", "pick up")}),
    ("thanks for the {kind} answer", {"kind": ("quick", "friendly", "helpful")}),
    ("is the {item} available in {colour}", {"colour": ("black", "blue", "red", "green")}),
)  # fmt: skip
PRAISE: Templates = (
    ("{good} {item}, {fast} delivery, will buy again", {"good": ("great", "excellent", "lovely", "nice"),
                                                        "fast": ("fast", "quick", "on time")}),
    ("love the {item}, {why}", {"why": ("great quality", "perfect fit", "exactly as described", "very happy")}),
    ("the {item} is {good}, thank you", {"good": ("perfect", "wonderful", "just right", "fine")}),
)  # fmt: skip


@dataclass(frozen=True)
class ShopEffects:
    """The shop's population and the sizes of its planted effects (rates are per day)."""

    lifetime_days: float = 360.0  # mean time from arrival to lapse (exponential)
    purchase_rate: float = 0.08  # mean purchases a day while active (Gamma across customers, shape 2)
    login_rate: float = 0.1
    browse_rate: float = 0.15  # page views a day
    ticket_rate: float = 0.05  # support tickets a day
    review_share: float = 0.3  # purchases followed by a review a few days later
    after_lapse: float = 0.3  # logins, page views and tickets after the lapse, as a share of the rates before
    warning_days: float = 60.0  # the planted effects show in this many days before a customer lapses
    dissatisfied_share: float = 0.5  # of the lapsing customers; the others drift away
    complaint_share: float = 0.9  # of a dissatisfied customer's tickets and reviews in those days
    base_complaint_share: float = 0.1  # of every other ticket and review
    browse_lift: float = 3.0  # a drifting customer's page views multiply by this in those days
    ticket_lift: float = 1.0  # a dissatisfied customer's tickets multiply by this then (1: counts tell nothing)
    mean_amount: float = 50.0

    def __post_init__(self) -> None:
        rates = (self.lifetime_days, self.purchase_rate, self.warning_days, self.mean_amount)
        lifts = (self.login_rate, self.browse_rate, self.ticket_rate, self.browse_lift, self.ticket_lift)
        shares = (self.review_share, self.complaint_share, self.base_complaint_share, self.dissatisfied_share,
                  self.after_lapse)  # fmt: skip
        if min(rates) <= 0 or min(lifts) < 0 or not all(0 <= s <= 1 for s in shares):
            raise ConfigError(
                "shop effects: lifetime_days, purchase_rate, warning_days and mean_amount must be above 0, the other "
                "rates and lifts at least 0, and the shares from 0 to 1"
            )


@dataclass(frozen=True)
class Shop:
    """The shop's tables, and the truth they were drawn from."""

    transactions: pa.Table  # customer_id, ts, amount
    events: pa.Table  # customer_id, ts, event (login, page_view, support_ticket, review), text (tickets, reviews)
    # customer_id, arrival, lapse (when each customer arrived and stops buying; may be after the end), dissatisfied
    lapses: pa.Table


def generate_shop(
    n_customers: int,
    *,
    days: int = 540,
    start: str = "2023-01-01",
    effects: ShopEffects | None = None,
    seed: int = 0,
) -> Shop:
    """Draw the shop's customers over ``days`` days from ``start``.

    Parameters
    ----------
    n_customers
        Customers; they arrive uniformly over the first 70% of the period.
    days
        Length of the period; nothing happens after it.
    start
        First day (ISO date).
    effects
        Population and effect sizes (default :class:`ShopEffects`).
    seed
        Seed of every draw.

    Raises
    ------
    ConfigError
        If ``n_customers`` or ``days`` is below 1.
    """
    if n_customers < 1 or days < 1:
        raise ConfigError(f"a shop needs at least one customer and one day, got {n_customers} and {days}")
    fx = effects or ShopEffects()
    rng = np.random.default_rng(seed)
    arrival = rng.uniform(0, 0.7 * days, n_customers)
    lapse = arrival + rng.exponential(fx.lifetime_days, n_customers)
    dissatisfied = rng.random(n_customers) < fx.dissatisfied_share
    end = np.minimum(lapse, days)  # purchases stop here
    warn = np.clip(lapse - fx.warning_days, arrival, end)  # the warning period is [warn, end)
    rate = rng.gamma(2.0, fx.purchase_rate / 2.0, n_customers)

    buyer, bought = _poisson_times(rng, arrival, end, rate)
    buyer, bought = np.concatenate([np.arange(n_customers), buyer]), np.concatenate([arrival, bought])
    amount = np.round(rng.gamma(2.0, fx.mean_amount / 2.0, len(bought)), 2)

    events: list[tuple[np.ndarray, np.ndarray, str]] = []
    one = np.ones(n_customers)
    for name, base, lift in (
        ("login", fx.login_rate, one),
        ("page_view", fx.browse_rate, np.where(dissatisfied, 1.0, fx.browse_lift)),
        ("support_ticket", fx.ticket_rate, np.where(dissatisfied, fx.ticket_lift, 1.0)),
    ):
        segments = ((arrival, warn, base * one), (warn, end, base * lift), (end, np.full(n_customers, days),
                    base * fx.after_lapse * one))  # fmt: skip
        for lo, hi, r in segments:
            events.append((*_poisson_times(rng, lo, hi, r), name))
    reviewed = rng.random(len(bought)) < fx.review_share
    reviewer, review_ts = buyer[reviewed], bought[reviewed] + rng.uniform(0.5, 4.0, reviewed.sum())
    kept = review_ts < end[reviewer]
    events.append((reviewer[kept], review_ts[kept], "review"))

    who = np.concatenate([e[0] for e in events])
    when = np.concatenate([e[1] for e in events])
    kind = np.concatenate([np.full(len(e[0]), e[2]) for e in events])
    warned = dissatisfied[who] & (when >= warn[who]) & (when < end[who])
    complaint = rng.random(len(who)) < np.where(warned, fx.complaint_share, fx.base_complaint_share)
    text = _texts(rng, kind, complaint)

    origin = np.datetime64(start, "s")
    ids = np.array([f"s{i:06d}" for i in range(n_customers)])
    return Shop(
        transactions=_sorted(
            {"customer_id": ids[buyer], "ts": _timestamps(origin, bought), "amount": amount}
        ),
        events=_sorted({"customer_id": ids[who], "ts": _timestamps(origin, when), "event": kind, "text": text}),
        lapses=pa.table(
            {"customer_id": ids, "arrival": _timestamps(origin, arrival), "lapse": _timestamps(origin, lapse),
             "dissatisfied": dissatisfied}
        ),
    )  # fmt: skip


def _poisson_times(
    rng: np.random.Generator, lo: np.ndarray, hi: np.ndarray, rate: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """A Poisson process of ``rate`` on each customer's [lo, hi): (customer index, time) of every point."""
    length = np.maximum(hi - lo, 0.0)
    counts = rng.poisson(rate * length)
    who = np.repeat(np.arange(len(lo)), counts)
    return who, lo[who] + rng.random(len(who)) * length[who]


def _texts(rng: np.random.Generator, kind: np.ndarray, complaint: np.ndarray) -> list[str | None]:
    """A ticket is a complaint or a question, a review a complaint or praise; logins and page views have none."""
    out: list[str | None] = []
    for k, bad in zip(kind.tolist(), complaint.tolist(), strict=True):
        if k == "support_ticket":
            out.append(_fill(rng, COMPLAINTS if bad else QUESTIONS))
        elif k == "review":
            out.append(_fill(rng, COMPLAINTS[-2:] if bad else PRAISE))
        else:
            out.append(None)
    return out


def _fill(rng: np.random.Generator, templates: Templates) -> str:
    template, slots = templates[int(rng.integers(len(templates)))]
    values = {name: options[int(rng.integers(len(options)))] for name, options in slots.items()}
    values["item"] = ITEMS[int(rng.integers(len(ITEMS)))]
    return " ".join(template.format(**values).split())  # an empty slot leaves no double space


def _timestamps(origin: np.datetime64, days: np.ndarray) -> np.ndarray:
    return origin + np.round(days * SECONDS_PER_DAY).astype("timedelta64[s]")


def _sorted(columns: dict[str, object]) -> pa.Table:
    table = pa.table(columns)
    return table.sort_by([("customer_id", "ascending"), ("ts", "ascending")])
