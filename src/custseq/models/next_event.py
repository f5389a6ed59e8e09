"""The next item a customer is likely to buy or do: the pre-training next-event head, optionally mixed with a copy
of the customer's own history.

During pre-training the next-event head learned to predict each customer's held-out last event from the
embedding of the events before it (:func:`custseq.sequences.masking.split_last`). At scoring time the whole
sequence before the cutoff goes in, so the head predicts the first event after the cutoff. Its softmax over
one categorical field (product, category, event type, channel) ranks the values the customer is likely to
pick next; the reserved ids (padding, mask, unknown) are left out and the rest renormalised.

On retail data the head is close to a popularity list, while customers mostly re-buy what they bought before.
A pointer/copy mixture (:class:`ItemMixture`, fitted by :func:`fit_item_mixture`) makes the proposals personal::

    p(item) = (1 - w) * p_head(item) + w * q_customer(item)

where ``q_customer`` is the customer's own recency-weighted distribution over the items of their past events
(see :func:`customer_item_distribution`). It is the copy mechanism of pointer-generator networks (See, Liu and
Manning 2017, "Get To The Point", eq. 9) with a fixed, fitted mixing weight instead of a learned gate.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Iterator
from dataclasses import dataclass, replace
from dataclasses import field as dataclass_field
from pathlib import Path
from typing import TYPE_CHECKING, Literal, cast

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import torch

from custseq.errors import ArtifactError, ConfigError, TrainingError
from custseq.io.prepared import WindowFolder
from custseq.models.pretrain import PretrainModel
from custseq.sequences.batch import EventBatch, SequenceStream, shard_files
from custseq.sequences.vocab import FIRST_VALUE_ID, PAD, SequenceVocab

if TYPE_CHECKING:
    from custseq.models.heads import EventHead

ITEM_FIELDS = ("product", "category", "event", "channel")  # what "auto" picks, first present first
MIXTURE_WEIGHTS = tuple(i / 10 for i in range(11))  # the grid fit_item_mixture searches: 0, 0.1, …, 1
HALF_LIVES = (1.0, 3.0, 10.0, 1e9)  # events; 1e9 = no decay (plain frequency)
MIN_FIT_CUSTOMERS = 20  # fewer customers with a next item than this: no mixture is fitted (weight 0)
MAX_FIT_CUSTOMERS = 20_000  # the mixture has two parameters: more customers cost time (2 min at 1M rows), not fit
# customers per forward pass, as score_window's: scoring 300,000 customers took 8% less than with 256 (the same
# items; probabilities within 1e-6, the float noise of other batch shapes)
PROPOSE_BATCH = 1024
CUTOFF_MARGIN_DAYS = 1 / 1440  # one minute: log_t_to_cutoff is float32, about a second off after 90 days


@dataclass(frozen=True)
class NextItems:
    """The ``k`` likeliest next values of one field per customer, likeliest first."""

    field: str
    customer_ids: list[str]  # sorted, like every scoring output
    items: list[list[str]]  # per customer, the values (vocabulary strings), likeliest first
    probabilities: np.ndarray  # (N, k') float64, k' = min(k, values of the field); rows descending, sum <= 1

    def __len__(self) -> int:
        return len(self.customer_ids)


@dataclass(frozen=True)
class ValueGroups:
    """A coarser level to propose at: the group of each real value of a field, e.g. each product's category.

    :func:`propose_next` sums the values' probabilities per group and proposes groups; a value in no group
    (position -1, e.g. an excluded product) adds to none, so a group sums only the values it keeps.
    """

    names: tuple[str, ...]  # the groups, proposed instead of the values
    of_value: np.ndarray  # (V',) int64: the position in names of each real value (vocabulary id - 3), or -1


def group_sums(probs: torch.Tensor, groups: ValueGroups) -> torch.Tensor:
    """(B, G) the probabilities of ``probs`` (B, V', over the real values) summed per group."""
    if len(groups.of_value) != probs.shape[1]:
        raise ConfigError(
            f"the value groups cover {len(groups.of_value)} values but the field has {probs.shape[1]}; build them "
            "from the model's vocabulary"
        )
    ungrouped = len(groups.names)  # a last column collects the values of no group, then is dropped
    index = torch.as_tensor(np.where(groups.of_value < 0, ungrouped, groups.of_value), device=probs.device)
    sums = torch.zeros(probs.shape[0], ungrouped + 1, dtype=probs.dtype, device=probs.device)
    return sums.index_add_(1, index, probs)[:, :ungrouped]


@dataclass(frozen=True)
class ItemMixture:
    """How much of each customer's own history to mix into the next-event head's proposals.

    ``p = (1 - weight) * p_head + weight * q_customer``; ``q_customer`` weighs each past event's item by
    ``0.5 ** (age / half_life)``, age counted in events from the latest (see :func:`customer_item_distribution`).
    Built by :func:`fit_item_mixture`, or by hand (``ItemMixture(weight=0.5, half_life=3.0, ...)``).
    """

    weight: float  # in [0, 1]; 0 = the head alone
    half_life: float  # events; 1e9 = no decay
    fitted_on: str  # the as-of date of the window it was fitted on ("" when built by hand)
    customers: int  # customers with a known next item it was fitted on
    hit_rate_at_k: dict[str, float] = dataclass_field(default_factory=dict)  # "head", "customer", "mixture"
    field: str = ""  # the item field it was fitted for ("" = any)
    k: int = 0  # the k of hit_rate_at_k
    note: str = ""  # why the weight is 0 without a fit, if so

    def __post_init__(self) -> None:
        if not 0.0 <= self.weight <= 1.0:
            raise ConfigError(f"the mixture weight must be in [0, 1], got {self.weight}")
        if not self.half_life > 0:
            raise ConfigError(f"the mixture half-life must be positive (events), got {self.half_life}")


def item_field(vocab: SequenceVocab, requested: str) -> str | None:
    """The categorical field next items are proposed from.

    Parameters
    ----------
    vocab : SequenceVocab
        The model's vocabulary.
    requested : str
        ``"auto"`` for the first of :data:`ITEM_FIELDS` the vocabulary has (with at least one value), or a
        field name.

    Returns
    -------
    str or None
        The field, or None when ``"auto"`` finds none (e.g. CDNOW has no categorical field).

    Raises
    ------
    ConfigError
        If an explicit name is not a categorical field of the vocabulary.
    """
    names = [f.name for f in vocab.layout.categorical()]
    if requested == "auto":
        return next((name for name in ITEM_FIELDS if name in names and vocab.values.get(name)), None)
    if requested not in names:
        raise ConfigError(
            f"item_field {requested!r} is not a categorical field of the model's vocabulary; "
            f"available: {names or 'none'} (or 'auto')"
        )
    return requested


@torch.no_grad()
def propose_next(
    model: PretrainModel,
    vocab: SequenceVocab,
    folder: WindowFolder,
    field: str,
    k: int,
    batch_size: int = PROPOSE_BATCH,
    *,
    anchor: Literal["last_event", "cutoff"] = "last_event",
    device: str | torch.device = "cpu",
    mixture: ItemMixture | None = None,
    groups: ValueGroups | None = None,
    customers: Collection[str] | None = None,
    max_customers: int | None = None,
) -> NextItems:
    """The ``k`` likeliest next values of ``field`` for every customer of a window folder (or some of them).

    Parameters
    ----------
    model : PretrainModel
        A pre-trained model with the next-event objective (``"next"`` in its objectives).
    vocab : SequenceVocab
        The vocabulary the folder's sequences were encoded with (the model's).
    folder : WindowFolder
        A window folder with ``sequences/`` (a ``prepare`` window, or the output of
        :func:`custseq.prepare.prepare_scoring_sequences`).
    field : str
        The categorical field to propose from (see :func:`item_field`).
    k : int
        Items per customer; fewer when the field has fewer values.
    batch_size : int
        Customers per forward pass.
    anchor : {"last_event", "cutoff"}
        ``"last_event"`` (default) measures the time features from the customer's last event, as the head saw
        them in training (:func:`~custseq.sequences.masking.split_last` re-anchors its inputs there);
        ``"cutoff"`` keeps the real time to the cutoff, which the head never saw on a last event.
    device : str or torch.device
        Where the forward passes run.
    mixture : ItemMixture or None
        None (default): the head alone. Otherwise the head's probabilities mixed with the customer's own
        recency-weighted item distribution over the events in their sequence (the last ``max_events`` the
        encoder reads); customers without a known item get the head alone. Items of equal mixed probability
        (e.g. the ones a customer never bought, at weight 1) are ranked by the head.
    groups : ValueGroups or None
        None (default): the values are proposed. Otherwise the groups: each group's probability is the sum of
        its values' (after the mixture), equal sums in the order of ``groups.names``.
    customers : collection of str or None
        None (default): every customer of the folder. Otherwise only these.
    max_customers : int or None
        None (default): no limit. Otherwise the first this many customers (in shard order).

    Returns
    -------
    NextItems
        Sorted by customer id; probabilities are over the field's real values (reserved ids excluded,
        renormalised), so each row is descending, in [0, 1] and sums to at most 1. With ``groups``, ``items``
        holds group names.

    Raises
    ------
    TrainingError
        If the model was pre-trained without the next-event objective.
    ConfigError
        If ``field`` is not a categorical field of the vocabulary, ``k`` is below 1, or the mixture was fitted
        for another field.
    ArtifactError
        If the folder holds no sequences, or the model's head does not match the vocabulary.
    """
    field = _checked_field(model, vocab, field, k, anchor)
    if mixture is not None and mixture.field and mixture.field != field:
        raise ConfigError(f"the item mixture was fitted for field {mixture.field!r}, not {field!r}; refit it")
    files = _sequence_files(folder)
    values = np.asarray(vocab.values[field] if groups is None else groups.names, dtype=object)
    top_k = min(k, len(values))
    stream = SequenceStream(files, vocab, model.encoder.cfg.max_events, batch_size, shuffle=False)
    model.eval().to(device)
    ids: list[str] = []
    chunks_p: list[np.ndarray] = []
    chunks_i: list[np.ndarray] = []
    for batch in _batches_of(stream, customers, max_customers):
        batch = batch.to(device)
        probs = _head_probabilities(model, batch, field, anchor)  # (B, V - 3) real values only
        if groups is not None:
            p = _renormalised(probs) if mixture is None else _mixed(batch, field, _renormalised(probs), mixture)
            ranked = torch.sort(group_sums(p, groups), dim=1, descending=True, stable=True)  # (B, G)
            top_p, top_i = ranked.values[:, :top_k], ranked.indices[:, :top_k]
        elif mixture is None:
            top_p, top_i = torch.topk(probs, top_k, dim=-1)  # sorted, largest first
        else:
            p_head = _renormalised(probs)
            top_p, top_i = rank_mixed(_mixed(batch, field, p_head, mixture), p_head, top_k)
        ids.extend(batch.customer_ids)
        # copies: top_p is a view of the batch's sorted (B, V') probabilities, which it would keep alive (4 GiB at
        # 300,000 customers and 2,000 products)
        chunks_p.append(top_p.double().cpu().numpy().copy())
        chunks_i.append(top_i.cpu().numpy().copy())
    order = sorted(range(len(ids)), key=ids.__getitem__)
    probabilities = np.concatenate(chunks_p)[order] if chunks_p else np.zeros((0, top_k))
    positions = np.concatenate(chunks_i)[order] if chunks_i else np.zeros((0, top_k), dtype=np.int64)
    return NextItems(
        field=field,
        customer_ids=[ids[i] for i in order],
        items=values[positions].tolist(),  # (N, k) names as one list of lists
        probabilities=probabilities,
    )


def _batches_of(
    stream: SequenceStream, customers: Collection[str] | None, max_customers: int | None
) -> Iterator[EventBatch]:
    """The stream's batches with only ``customers`` (None: all), the first ``max_customers`` of them (None: no
    limit)."""
    given = 0
    for batch in stream.batches():
        rows = list(range(batch.size))
        if customers is not None:
            rows = [i for i, c in enumerate(batch.customer_ids) if c in customers]
        if max_customers is not None:
            rows = rows[: max_customers - given]
        if len(rows) < batch.size:
            batch = batch.select(torch.tensor(rows, dtype=torch.long))
        if batch.size:
            given += batch.size
            yield batch
        if max_customers is not None and given >= max_customers:
            return


def _mixed(batch: EventBatch, field: str, p_head: torch.Tensor, mixture: ItemMixture) -> torch.Tensor:
    """(B, V') the head's probabilities mixed with each customer's own items (:func:`mix`)."""
    if mixture.weight == 0:  # what mix gives, exactly, without the customers' (B, V') distributions
        return p_head
    q, known = customer_item_distribution(batch.categorical[field], batch.lengths, mixture.half_life)
    return mix(p_head, q, known, mixture.weight)


def customer_item_distribution(
    item_ids: torch.Tensor, lengths: torch.Tensor, half_life: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each customer's recency-weighted distribution over the real values of one field in their sequence.

    An event's weight is ``0.5 ** (age / half_life)``, its age the number of later events that carry the
    field (any id but padding), so the latest one has age 0. Only real values (ids >= 3) get mass; the
    unknown id (a rare value) still ages the events before it.

    Parameters
    ----------
    item_ids : torch.Tensor
        (B, T) int64 ids of the field, padding after each row's ``length`` tokens.
    lengths : torch.Tensor
        (B,) real tokens per row.
    half_life : float
        In events; 1e9 weighs every event alike (plain frequency).

    Returns
    -------
    q : torch.Tensor
        (B, W) float64 over the real values (column j = id j + 3), rows summing to 1, or 0 without a known
        value; W reaches only the largest id in ``item_ids`` (:func:`mix` pads it to the vocabulary).
    known : torch.Tensor
        (B,) bool: the customer has at least one real value.
    """
    positions = torch.arange(item_ids.shape[1], device=item_ids.device)
    inside = positions.unsqueeze(0) < lengths.unsqueeze(1)  # (B, T)
    carried = inside & (item_ids != PAD)  # (B, T) events with the field
    later = carried.flip(1).long().cumsum(1).flip(1) - carried.long()  # (B, T) carrying events after this one
    weights = torch.pow(0.5, later.double() / half_life) * (carried & (item_ids >= FIRST_VALUE_ID))  # (B, T)
    width = int(item_ids.max().clamp(min=FIRST_VALUE_ID - 1)) + 1
    mass = torch.zeros(item_ids.shape[0], width, dtype=torch.float64, device=item_ids.device)
    mass.scatter_add_(1, item_ids.clamp(min=0), weights)  # (B, V)
    q = mass[:, FIRST_VALUE_ID:]  # (B, V - 3)
    total = q.sum(dim=1, keepdim=True)  # (B, 1)
    known = total.squeeze(1) > 0
    return q / total.clamp(min=torch.finfo(torch.float64).tiny), known


def mix(p_head: torch.Tensor, q: torch.Tensor, known: torch.Tensor, weight: float) -> torch.Tensor:
    """``(1 - w) * p_head + w * q`` per customer, with ``w = 0`` (the head alone) where nothing is known.

    ``p_head`` is (B, V') over the real values; ``q`` may be narrower (values no customer of the batch has) and
    is padded with zeros. Rows of the result sum to those of ``p_head`` (1 after a softmax).
    """
    if q.shape[1] < p_head.shape[1]:
        q = torch.nn.functional.pad(q, (0, p_head.shape[1] - q.shape[1]))
    elif q.shape[1] > p_head.shape[1]:
        raise ArtifactError(
            f"the sequences hold value ids up to {q.shape[1] + FIRST_VALUE_ID - 1} but the model's head has only "
            f"{p_head.shape[1]} real values; score with the vocabulary saved with the model"
        )
    w = (weight * known.to(p_head.dtype)).unsqueeze(1)  # (B, 1)
    return (1 - w) * p_head + w * q.to(p_head.dtype)


@dataclass(frozen=True)
class NextItemTargets:
    """Each customer's first real value of a field after an earlier window's cutoff, read from a later window."""

    customer_ids: list[str]  # sorted
    value_ids: np.ndarray  # (N,) int64 vocabulary ids (>= 3)
    earlier_cutoff: dt.datetime
    later_cutoff: dt.datetime
    without_earlier_tokens: int  # later-window customers with no token before the earlier cutoff: left out


def next_item_targets(
    window: WindowFolder, later_window: WindowFolder, field: str, horizon_days: int
) -> NextItemTargets:
    """The first real value of ``field`` each customer of ``later_window`` has in ``[cutoff, cutoff + horizon)``.

    ``cutoff`` is ``window``'s. A token of the later window lies ``d = expm1(log_t_to_cutoff)`` days before
    the later cutoff, so it is at or after ``window``'s cutoff when ``d < gap`` (the gap between the two
    cutoffs, read from the ``cutoff`` column of both windows' sequences), give or take a minute of float32
    rounding; within the horizon when ``d > gap - horizon_days``. Tokens with the padding or the unknown id
    are skipped. A customer whose later sequence holds no token before ``window``'s cutoff (cut to its last
    ``max_events`` tokens, or new since) is left out, since their first token after it may be missing.

    Parameters
    ----------
    window : WindowFolder
        The earlier window folder (with ``sequences/``).
    later_window : WindowFolder
        A window folder with a later cutoff.
    field : str
        A categorical field of the sequences.
    horizon_days : int
        Days after ``window``'s cutoff a next item may lie in (capped at the gap between the cutoffs).

    Returns
    -------
    NextItemTargets
        Customers with such a value, sorted by id.

    Raises
    ------
    ConfigError
        If ``horizon_days`` is below 1, ``later_window`` is not later than ``window``, or ``field`` is not a
        column of the sequences.
    ArtifactError
        If either folder holds no sequences.
    """
    if horizon_days < 1:
        raise ConfigError(f"horizon_days must be at least 1, got {horizon_days}")
    earlier_cutoff = _window_cutoff(window)
    later = ds.dataset(later_window.sequences, format="parquet", partitioning="hive")
    if field not in later.schema.names:
        raise ConfigError(f"{later_window.folder} has no sequence column {field!r}; columns: {later.schema.names}")
    table = later.to_table(columns=["customer_id", "cutoff", "length", field, "log_t_to_cutoff"])
    table = table.filter(pc.greater(table["length"], 0)).sort_by("customer_id")
    later_cutoff = _window_cutoff(later_window, table)
    if later_cutoff <= earlier_cutoff:
        raise ConfigError(
            f"later_window's cutoff {later_cutoff} must come after window's cutoff {earlier_cutoff}; "
            "give a later prepare window (e.g. the scoring window) as later_window"
        )
    gap = (later_cutoff - earlier_cutoff).total_seconds() / 86400
    ids = _flat(table[field]).astype(np.int64)
    days = np.expm1(_flat(table["log_t_to_cutoff"]).astype(np.float64))
    lengths = table["length"].to_numpy().astype(np.int64)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    before = days >= gap + CUTOFF_MARGIN_DAYS
    lowest = gap - horizon_days + CUTOFF_MARGIN_DAYS if horizon_days < gap else -np.inf
    candidate = ~before & (days > lowest) & (ids >= FIRST_VALUE_ID)
    first = np.minimum.reduceat(np.where(candidate, np.arange(len(ids)), len(ids)), starts)  # (N,)
    seen_before = np.logical_or.reduceat(before, starts)  # (N,)
    keep = seen_before & (first < len(ids))
    customers = table["customer_id"].to_numpy(zero_copy_only=False)
    return NextItemTargets(
        customer_ids=[str(c) for c in customers[keep]],
        value_ids=ids[first[keep]],
        earlier_cutoff=earlier_cutoff,
        later_cutoff=later_cutoff,
        without_earlier_tokens=int((~seen_before).sum()),
    )


@torch.no_grad()
def fit_item_mixture(
    model: PretrainModel,
    vocab: SequenceVocab,
    window: WindowFolder,
    later_window: WindowFolder,
    field: str,
    horizon_days: int,
    k: int,
    *,
    batch_size: int = PROPOSE_BATCH,
    anchor: Literal["last_event", "cutoff"] = "last_event",
    device: str | torch.device = "cpu",
) -> ItemMixture:
    """Fit the weight and half-life of the item mixture to the customers' actual next items.

    The head and each customer's history are read as of ``window``'s cutoff (the first
    :data:`MAX_FIT_CUSTOMERS` customers with a next item, in shard order); the actual next item is the
    customer's first real value of ``field`` after that cutoff (within ``horizon_days``), read from
    ``later_window``'s sequences (:func:`next_item_targets`). The weight (0, 0.1, …, 1) and half-life
    (:data:`HALF_LIVES` events) maximising hit@k are chosen; ties go to the higher mean probability of the
    actual item, then to the lower weight and the shorter half-life.

    Leakage: ``later_window``'s sequences hold only tokens before its own cutoff, so the fit uses nothing at
    or after it. Fit on the latest training window with the scoring window as ``later_window`` (whose cutoff
    is one horizon later): the next items lie before the scoring cutoff, so the mixture applied at the
    scoring cutoff has seen no data after it.

    Parameters
    ----------
    model : PretrainModel
        A pre-trained model with the next-event objective.
    vocab : SequenceVocab
        The vocabulary both windows were encoded with (the model's).
    window : WindowFolder
        The window folder whose customers the mixture is fitted on (e.g. the latest training window).
    later_window : WindowFolder
        A window folder with a later cutoff (e.g. the scoring window).
    field : str
        The item field (see :func:`item_field`).
    horizon_days : int
        How far after ``window``'s cutoff a next item may lie.
    k : int
        Proposals per customer the hit rate counts (the k that will be used at scoring time).
    batch_size, anchor, device
        As in :func:`propose_next`.

    Returns
    -------
    ItemMixture
        The chosen weight and half-life, with hit@k of the head alone (weight 0), the customer alone (weight 1,
        ties ranked by the head) and the mixture on the fitting customers. Weight 0 with a ``note`` when fewer
        than :data:`MIN_FIT_CUSTOMERS` customers have a next item.

    Raises
    ------
    TrainingError, ConfigError, ArtifactError
        As in :func:`propose_next` and :func:`next_item_targets`.
    """
    field = _checked_field(model, vocab, field, k, anchor)
    files = _sequence_files(window)
    targets = next_item_targets(window, later_window, field, horizon_days)
    if len(targets.value_ids) and int(targets.value_ids.max()) >= vocab.size(field):
        raise ArtifactError(
            f"{later_window.folder}'s sequences hold {field} id {int(targets.value_ids.max())}, beyond the "
            f"vocabulary's {vocab.size(field)} ids; both windows must come from the prepare run the model's "
            "vocabulary belongs to"
        )
    target_of = dict(zip(targets.customer_ids, targets.value_ids.tolist(), strict=True))
    fitted_on = (targets.earlier_cutoff - dt.timedelta(days=1)).date().isoformat()
    grid = [(w, h) for w in MIXTURE_WEIGHTS for h in HALF_LIVES]
    hits = np.zeros(len(grid))
    target_mass = np.zeros(len(grid))
    n = 0
    stream = SequenceStream(files, vocab, model.encoder.cfg.max_events, batch_size, shuffle=False)
    model.eval().to(device)
    for batch in _batches_of(stream, target_of, MAX_FIT_CUSTOMERS):
        batch = batch.to(device)
        target = torch.tensor([target_of[c] - FIRST_VALUE_ID for c in batch.customer_ids], device=device)  # (B,)
        p_head = _renormalised(_head_probabilities(model, batch, field, anchor))  # (B, V')
        n += batch.size
        for h in HALF_LIVES:
            q, known = customer_item_distribution(batch.categorical[field], batch.lengths, h)
            for w in MIXTURE_WEIGHTS:
                mixed = mix(p_head, q, known, w)
                _, top = rank_mixed(mixed, p_head, k)
                j = grid.index((w, h))
                hits[j] += float((top == target.unsqueeze(1)).any(dim=1).sum())
                target_mass[j] += float(mixed.gather(1, target.unsqueeze(1)).sum())
    if n == 0:
        note = f"no customer of {window.folder} has a next {field} within {horizon_days} days in {later_window.folder}"
        return ItemMixture(0.0, HALF_LIVES[-1], fitted_on, 0, {}, field, k, note)
    rate = hits / n
    best = max(range(len(grid)), key=lambda j: (rate[j], target_mass[j], -grid[j][0], -grid[j][1]))
    weight, half_life = grid[best]
    hit_rates = {"head": float(rate[grid.index((0.0, half_life))]),
                 "customer": float(rate[grid.index((1.0, half_life))]), "mixture": float(rate[best])}  # fmt: skip
    if n < MIN_FIT_CUSTOMERS:
        note = (
            f"only {n} customers have a next {field} after {fitted_on} (at least {MIN_FIT_CUSTOMERS} needed): "
            "the head alone is used"
        )
        return ItemMixture(0.0, half_life, fitted_on, n, {**hit_rates, "mixture": hit_rates["head"]}, field, k, note)
    return ItemMixture(weight, half_life, fitted_on, n, hit_rates, field, k)


def anchor_at_last_event(batch: EventBatch) -> EventBatch:
    """The batch with each token's time to the cutoff measured to the customer's last token instead.

    The next-event head was trained on inputs re-anchored this way (the held-out event's time must not leak),
    so its last input token always had time 0 to the "cutoff".
    """
    rows = torch.arange(batch.size, device=batch.lengths.device)
    last = (batch.lengths - 1).clamp(min=0)
    days = torch.expm1(batch.log_t_to_cutoff)  # (B, T) days to the cutoff
    anchor = days[rows, last].unsqueeze(1)  # (B, 1)
    log_t = torch.log1p((days - anchor).clamp(min=0)) * batch.mask  # (B, T)
    return replace(batch, log_t_to_cutoff=log_t)


def _checked_field(model: PretrainModel, vocab: SequenceVocab, field: str, k: int, anchor: str) -> str:
    """The resolved item field, after checking the model's head, ``k`` and ``anchor``."""
    if model.next_head is None:
        raise TrainingError(
            f"this model was pre-trained with objectives {list(model.pretrain_cfg.objectives)}, without 'next': "
            "it has no next-event head to propose items. Pre-train with the 'next' objective."
        )
    if k < 1:
        raise ConfigError(f"k must be at least 1, got {k}")
    if anchor not in ("last_event", "cutoff"):
        raise ConfigError(f"anchor must be last_event or cutoff, got {anchor!r}")
    resolved = item_field(vocab, field)
    if resolved is None:
        raise ConfigError(
            f"the vocabulary has none of the item fields {list(ITEM_FIELDS)} (categorical fields: "
            f"{[f.name for f in vocab.layout.categorical()] or 'none'}); there are no items to propose"
        )
    head = model.next_head.categorical[resolved]
    if head.out_features != vocab.size(resolved):
        raise ArtifactError(
            f"the model's next-event head has {head.out_features} {resolved} ids but the vocabulary "
            f"{vocab.size(resolved)}; score with the vocabulary saved with the model"
        )
    return resolved


def _sequence_files(folder: WindowFolder) -> tuple[Path, ...]:
    files = tuple(shard_files(folder.sequences))
    if not files:
        raise ArtifactError(f"{folder.folder} has no sequences/*.parquet; give a window folder written by prepare")
    return files


def _head_probabilities(model: PretrainModel, batch: EventBatch, field: str, anchor: str) -> torch.Tensor:
    """(B, V - 3) float32 softmax of the next-event head over the field's real values."""
    inputs = anchor_at_last_event(batch) if anchor == "last_event" else batch
    head = cast("EventHead", model.next_head)  # _checked_field made sure the model has one
    logits = head(model.encoder(inputs).embedding).logits[field]  # (B, V)
    return torch.softmax(logits[:, FIRST_VALUE_ID:].float(), dim=-1)


def _renormalised(probs: torch.Tensor) -> torch.Tensor:
    """A float32 softmax in float64, rescaled to sum to 1 (float32 sums stray by about 1e-7)."""
    probs = probs.double()
    return probs / probs.sum(dim=1, keepdim=True)


RANK_CANDIDATES = 16  # values ranked beyond k by rank_mixed before it falls back to sorting a whole row


def rank_mixed(mixed: torch.Tensor, p_head: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` largest mixed probabilities (B, k) and their value positions; equal ones in the head's order
    (the higher head probability first, then the lower position).

    Only the ``k + RANK_CANDIDATES`` largest of each row are ordered; a row whose k-th value ties with a value
    that may lie beyond them (e.g. weight 1: every item the customer never bought is at 0) is ranked by sorting
    the whole row (:func:`rank_fully`), which gives the same answer at the cost of two sorts of (B, V')."""
    width = mixed.shape[1]
    m = min(width, k + RANK_CANDIDATES)
    values, positions = torch.topk(mixed, m, dim=1)  # (B, m), equal values in no particular order
    top_v, top_i = _ordered(values, positions, p_head.gather(1, positions), k)
    if m == width:
        return top_v, top_i
    unsure = top_v[:, -1] <= values[:, -1]  # the k-th value is also the m-th: an equal one may be left out
    if bool(unsure.any()):
        rows = unsure.nonzero().squeeze(1)
        top_v[rows], top_i[rows] = rank_fully(mixed[rows], p_head[rows], k)
    return top_v, top_i


def rank_fully(mixed: torch.Tensor, p_head: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`rank_mixed` by sorting every value of each row: the values in the head's order (stable, so equal
    head probabilities keep the lower position first), then by the mixed probability (stable again)."""
    head_order = torch.sort(p_head, dim=1, descending=True, stable=True).indices  # (B, V')
    ranked = torch.sort(mixed.gather(1, head_order), dim=1, descending=True, stable=True)
    return ranked.values[:, :k], head_order.gather(1, ranked.indices[:, :k])


def _ordered(
    values: torch.Tensor, positions: torch.Tensor, head: torch.Tensor, k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``k`` of (B, m) candidates by falling value, then falling head probability, then position:
    stable sorts, the last key first."""
    order = torch.argsort(positions, dim=1, stable=True)
    order = order.gather(1, torch.sort(head.gather(1, order), dim=1, descending=True, stable=True).indices)
    order = order.gather(1, torch.sort(values.gather(1, order), dim=1, descending=True, stable=True).indices)
    first = order[:, :k]
    return values.gather(1, first), positions.gather(1, first)


def _window_cutoff(folder: WindowFolder, table: pa.Table | None = None) -> dt.datetime:
    """The cutoff stored in a window's sequences (the same on every row)."""
    if table is None:
        files = _sequence_files(folder)
        table = ds.dataset(list(files), format="parquet").to_table(columns=["cutoff"])
    if table.num_rows == 0:
        raise ArtifactError(f"{folder.folder} has no customers in sequences/; give a window folder written by prepare")
    cutoffs = pc.unique(table["cutoff"]).to_pylist()
    if len(cutoffs) != 1:
        raise ArtifactError(
            f"{folder.folder}'s sequences hold several cutoffs {sorted(cutoffs)[:3]}; expected one window"
        )
    cutoff = cutoffs[0]
    return cutoff.replace(tzinfo=None) if isinstance(cutoff, dt.datetime) else dt.datetime.combine(cutoff, dt.time())


def _flat(column: pa.ChunkedArray) -> np.ndarray:
    return column.combine_chunks().flatten().to_numpy(zero_copy_only=False)
