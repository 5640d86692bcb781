"""Split a labelled training set among federated clients.

Every scheme is a pure function of (labels, n_clients, parameters, seed): the same call gives the
same split on any machine, so runs of different algorithms see identical client data. Each scheme
first decides an owner (client id) for every position and then groups positions by owner, which
makes "disjoint and complete" true by construction rather than something to check afterwards.

Dirichlet proportions are drawn in log space (log Gamma(a) = log Gamma(a+1) + log(U)/a), because
at alpha around 0.001 plain Gamma draws underflow to exact zeros, which turns normalisation into
0/0 = NaN and leaves Sinkhorn balancing with empty rows or columns.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# The partition-scheme registry (filled below by ``@scheme``): config choices come from it, so a new
# scheme is one decorated function in this module.
SCHEME_DRAWERS: dict = {}
QUANTITY_SIZES = ("lognormal", "dirichlet")

MAX_DRAWS = 100
SINKHORN_MAX_ITER = 1000
# Balancing stops once every client's expected size is within this many samples of equal: beyond
# that, rounding to whole samples dominates and more iterations only cost time.
SINKHORN_TOL_SAMPLES = 0.25
# server_splits draws from its own stream so its shuffles are not replayed by partition(seed).
_SERVER_SPLIT_STREAM = 1


class PartitionError(ValueError):
    """A partition request that cannot be met; the message is one line naming field and value."""


@dataclass(frozen=True)
class ServerSplits:
    client_pool: np.ndarray
    val: np.ndarray
    proxy: np.ndarray


def partition(labels: np.ndarray, n_clients: int, scheme: str, *, seed: int,
              alpha: float = 0.5,
              classes_per_client: int = 2,
              quantity_sizes: str = "lognormal",
              quantity_sigma: float = 1.0,
              min_size: int = 0,
              num_classes: int | None = None) -> list[np.ndarray]:
    """Return `n_clients` sorted int64 arrays of positions into `labels`, covering each once.

    `min_size` is a guarantee for every scheme: a client below it makes the split fail with
    PartitionError rather than silently starve that client. Only `dirichlet` has random sizes, so
    only it redraws (at most MAX_DRAWS times); `quantity` meets the floor by construction, and the
    near-equal schemes are checked once. `num_classes` only validates the labels here.
    """
    labels = _check_labels(labels, num_classes)
    if scheme not in SCHEMES:
        _fail("scheme", scheme, f"is not one of {', '.join(SCHEMES)}")
    _check_int("n_clients", n_clients, 1)
    _check_int("seed", seed, 0)
    _check_int("min_size", min_size, 0)
    if n_clients > len(labels):
        _fail("n_clients", n_clients, f"exceeds the {len(labels)} labels to share")
    floor = max(1, min_size) if scheme == "quantity" else min_size
    if n_clients * floor > len(labels):
        _fail("min_size", min_size,
              f"x {n_clients} clients = {n_clients * floor} samples exceeds the {len(labels)} labels;"
              " lower min_size or n_clients")
    draw = _scheme_drawer(labels, n_clients, scheme, alpha, classes_per_client,
                          quantity_sizes, quantity_sigma, min_size)
    owner = _draw_meeting_min_size(draw, np.random.default_rng(seed), n_clients, min_size,
                                   MAX_DRAWS if scheme == "dirichlet" else 1, scheme)
    return _group_by_owner(owner, n_clients)


def partition_pool(labels: np.ndarray, pool: np.ndarray, n_clients: int, scheme: str, *,
                   seed: int, **params) -> list[np.ndarray]:
    """Partition only `labels[pool]` and answer with positions into the full `labels`.

    The server's val/proxy sets are carved first (server_splits), so clients never hold them; the
    runner still wants positions into the one in-memory training tensor.
    """
    pool = np.asarray(pool, dtype=np.int64)
    labels = np.asarray(labels)
    return [pool[part] for part in partition(labels[pool], n_clients, scheme, seed=seed, **params)]


def server_splits(labels: np.ndarray, val_fraction: float, proxy_fraction: float,
                  seed: int) -> ServerSplits:
    """Carve stratified server validation and proxy sets off the training labels.

    Stratifying keeps the server sets class-balanced like the training set, so validation accuracy
    and FedDF's distillation data are not themselves skewed by chance.
    """
    labels = _check_labels(labels, None)
    _check_fraction("val_fraction", val_fraction)
    _check_fraction("proxy_fraction", proxy_fraction)
    if val_fraction + proxy_fraction >= 1:
        _fail("proxy_fraction", proxy_fraction,
              f"plus val_fraction {val_fraction} must be < 1 to leave data for clients")
    _check_int("seed", seed, 0)
    rng = np.random.default_rng([seed, _SERVER_SPLIT_STREAM])
    val, proxy, pool = [], [], []
    for positions in _class_positions(labels, rng):
        n_val = min(len(positions), round(len(positions) * val_fraction))
        n_proxy = min(len(positions) - n_val, round(len(positions) * proxy_fraction))
        val.append(positions[:n_val])
        proxy.append(positions[n_val:n_val + n_proxy])
        pool.append(positions[n_val + n_proxy:])
    return ServerSplits(client_pool=_sorted_union(pool), val=_sorted_union(val),
                        proxy=_sorted_union(proxy))


def partition_stats(labels: np.ndarray, parts: list[np.ndarray], num_classes: int) -> dict:
    """Summarise a split as plain JSON types, saved with every run so results can be explained.

    Heterogeneity is the mean Jensen-Shannon distance (base 2, so in [0, 1]) between each
    non-empty client's label distribution and the distribution of all partitioned samples; empty
    clients are left out because they have no distribution.
    """
    labels = np.asarray(labels)
    counts = np.stack([np.bincount(labels[p], minlength=num_classes) for p in parts])
    sizes = counts.sum(axis=1)
    global_dist = counts.sum(axis=0) / max(1, counts.sum())
    distances = [_js_distance(row / row.sum(), global_dist) for row in counts if row.sum() > 0]
    return {
        "n_clients": len(parts),
        "sizes": sizes.tolist(),
        "size_min": int(sizes.min()),
        "size_max": int(sizes.max()),
        "size_mean": float(sizes.mean()),
        "size_std": float(sizes.std()),
        "class_counts": counts.tolist(),
        "classes_per_client_mean": float((counts > 0).sum(axis=1).mean()),
        "heterogeneity": float(np.mean(distances)) if distances else 0.0,
        "heterogeneity_metric": "mean_js_distance",
    }


def plot_partition(stats: dict, path, title: str = "") -> None:
    """Draw the client x class count heatmap; the format follows the suffix (.png or .svg).

    Uses a bare Figure instead of pyplot so no global backend or open-figure state is touched.
    """
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    path = Path(path)
    if path.suffix.lower() not in (".png", ".svg"):
        _fail("plot", str(path), "must end in .png or .svg")
    counts = np.asarray(stats["class_counts"])
    n_clients, n_classes = counts.shape
    fig = Figure(figsize=(min(12, 3 + 0.3 * n_classes), min(12, 2.5 + 0.08 * n_clients)))
    ax = fig.add_subplot()
    image = ax.imshow(counts, aspect="auto", interpolation="nearest", cmap="viridis")
    fig.colorbar(image, ax=ax, label="samples")
    ax.set_xlabel("class")
    ax.set_ylabel("client")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title(title or f"{n_clients} clients, heterogeneity {stats['heterogeneity']:.3f}")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


# ---------------------------------------------------------------------------------------------
# Schemes: each returns draw(rng) -> owner array (client id per position).


def scheme(name: str):
    """Register a scheme: a function (labels, n_clients, Knobs) -> draw(rng) -> owner array, which checks
    the knobs it uses before returning."""
    def wrap(fn):
        SCHEME_DRAWERS[name] = fn
        return fn
    return wrap


@dataclass(frozen=True)
class Knobs:
    alpha: float
    classes_per_client: int
    quantity_sizes: str
    quantity_sigma: float
    min_size: int


def _scheme_drawer(labels, n_clients, scheme_name, alpha, classes_per_client, quantity_sizes,
                   quantity_sigma, min_size):
    knobs = Knobs(alpha, classes_per_client, quantity_sizes, quantity_sigma, min_size)
    return SCHEME_DRAWERS[scheme_name](labels, n_clients, knobs)


@scheme("iid")
def _iid(labels, n_clients, k: Knobs):
    return lambda rng: _iid_owner(len(labels), n_clients, rng)


@scheme("dirichlet")
def _dirichlet(labels, n_clients, k: Knobs):
    _check_alpha(k.alpha)
    return lambda rng: _dirichlet_owner(labels, n_clients, k.alpha, rng)


@scheme("balanced_dirichlet")
def _balanced_dirichlet(labels, n_clients, k: Knobs):
    _check_alpha(k.alpha)
    return lambda rng: _balanced_dirichlet_owner(labels, n_clients, k.alpha, rng)


@scheme("shards")
def _shards(labels, n_clients, k: Knobs):
    _check_shards(labels, n_clients, k.classes_per_client)
    return lambda rng: _shards_owner(labels, n_clients, k.classes_per_client, rng)


@scheme("quantity")
def _quantity(labels, n_clients, k: Knobs):
    alpha, quantity_sizes, quantity_sigma, min_size = k.alpha, k.quantity_sizes, k.quantity_sigma, k.min_size
    if quantity_sizes not in QUANTITY_SIZES:
        _fail("quantity_sizes", quantity_sizes, f"is not one of {', '.join(QUANTITY_SIZES)}")
    if quantity_sizes == "dirichlet":
        _check_alpha(alpha)
    elif not (isinstance(quantity_sigma, numbers.Real) and math.isfinite(quantity_sigma)
              and quantity_sigma >= 0):
        _fail("quantity_sigma", quantity_sigma, "must be a finite number >= 0")
    return lambda rng: _quantity_owner(len(labels), n_clients, quantity_sizes, alpha,
                                       quantity_sigma, max(1, min_size), rng)


def _draw_meeting_min_size(draw, rng, n_clients, min_size, draws, scheme):
    """Redraw until every client has min_size samples; bounded, so no setting can hang."""
    best = 0
    for _ in range(draws):
        owner = draw(rng)
        smallest = int(np.bincount(owner, minlength=n_clients).min())
        if smallest >= min_size:
            return owner
        best = max(best, smallest)
    _fail("min_size", min_size,
          f"not reached by all {n_clients} clients in {draws} draw(s) of scheme {scheme!r}"
          f" (best smallest client: {best}); lower min_size or n_clients"
          + (", or raise alpha" if scheme == "dirichlet" else ""))


def _iid_owner(n, n_clients, rng):
    return _owner_from_sizes(rng.permutation(n), _even_sizes(n, n_clients))


def _dirichlet_owner(labels, n_clients, alpha, rng):
    """Hsu et al. (2019): each class spread over clients by its own Dir(alpha) draw."""
    owner = np.empty(len(labels), dtype=np.int64)
    for positions in _class_positions(labels, rng):
        proportions = _softmax(_log_gamma(rng, alpha, n_clients))
        owner[positions] = _owners_for(proportions, len(positions))
    return owner


def _balanced_dirichlet_owner(labels, n_clients, alpha, rng):
    """DynaFed's split_dirichlet: Dir(alpha) mixes, Sinkhorn-balanced to equal client sizes.

    Deviations from the official code, none of which changes the distribution of sizes or label
    mixes: indices are shuffled within each class (so the assignment depends on the seed, not on
    file order); balancing runs in log space (so alpha ~ 0.001 cannot produce NaN) and stops once
    sizes are balanced to a quarter sample; and the column targets are N/n_clients samples rather
    than equal proportions, which coincides with the official code on class-balanced data and
    still yields equal sizes on imbalanced data.
    """
    groups = _class_positions(labels, rng)
    class_sizes = np.array([len(g) for g in groups], dtype=np.float64)
    log_matrix = _log_gamma(rng, alpha, (len(groups), n_clients))
    proportions = _sinkhorn_rows(log_matrix, class_sizes, len(labels) / n_clients)
    owner = np.empty(len(labels), dtype=np.int64)
    for positions, row in zip(groups, proportions):
        owner[positions] = _owners_for(row, len(positions))
    return owner


def _shards_owner(labels, n_clients, k, rng):
    """Exactly k distinct classes per client; each class held by a near-equal number of clients.

    Clients pick, in random order, the k classes with the fewest holders so far (ties broken at
    random). That keeps holder counts within one of each other while class pairs stay varied,
    unlike a cyclic (i*k + j) mod C assignment that repeats only C/gcd(k, C) distinct sets.
    """
    groups = _class_positions(labels, rng)
    holder_count = np.zeros(len(groups), dtype=np.int64)
    holders = [[] for _ in groups]
    for client in rng.permutation(n_clients):
        for c in np.lexsort((rng.random(len(groups)), holder_count))[:k]:
            holders[c].append(client)
            holder_count[c] += 1
    owner = np.empty(len(labels), dtype=np.int64)
    for c, positions in enumerate(groups):
        if len(positions) < len(holders[c]):
            _fail("n_clients", n_clients,
                  f"gives class {int(np.unique(labels)[c])} {len(holders[c])} holders but it has only {len(positions)}"
                  " samples; lower n_clients or classes_per_client")
        owner[positions] = np.repeat(holders[c], _even_sizes(len(positions), len(holders[c])))
    return owner


def _quantity_owner(n, n_clients, sizes_from, alpha, sigma, floor, rng):
    """IID label mixes with skewed sizes; the floor is granted first, the rest by the draw."""
    if sizes_from == "lognormal":
        weights = _softmax(rng.normal(0.0, sigma, n_clients))
    else:
        weights = _softmax(_log_gamma(rng, alpha, n_clients))
    sizes = floor + _apportion(weights, n - floor * n_clients)
    return _owner_from_sizes(rng.permutation(n), sizes)


# ---------------------------------------------------------------------------------------------
# Numerics.


def _log_gamma(rng, alpha, shape):
    """Log of Gamma(alpha, 1) draws that stays finite for any alpha > 0."""
    return np.log(rng.gamma(alpha + 1.0, size=shape)) + np.log1p(-rng.random(shape)) / alpha


def _softmax(logits):
    weights = np.exp(logits - logits.max())
    return weights / weights.sum()


def _logsumexp(x, axis):
    peak = x.max(axis=axis, keepdims=True)
    return (peak + np.log(np.exp(x - peak).sum(axis=axis, keepdims=True))).squeeze(axis)


def _sinkhorn_rows(log_matrix, row_sums, col_sum):
    """Scale a (classes x clients) matrix so rows sum to class sizes and columns to `col_sum`.

    Alternates column and row scaling (DynaFed's make_double_stochastic), always ending on rows
    because rows become the per-class split proportions; returns those row proportions.
    Column errors are log ratios, so dividing the sample tolerance by the target gives a relative
    tolerance.
    """
    log_rows, log_col = np.log(row_sums), math.log(col_sum)
    tolerance = SINKHORN_TOL_SAMPLES / col_sum
    log_matrix = log_matrix - _logsumexp(log_matrix, 1)[:, None] + log_rows[:, None]
    for _ in range(SINKHORN_MAX_ITER):
        col_error = _logsumexp(log_matrix, 0) - log_col
        if np.abs(col_error).max() < tolerance:
            break
        log_matrix = log_matrix - col_error[None, :]
        log_matrix = log_matrix - (_logsumexp(log_matrix, 1) - log_rows)[:, None]
    return np.exp(log_matrix - log_rows[:, None])


def _owners_for(proportions, n):
    """Owner ids for n consecutive (already shuffled) positions cut at cumulative proportions."""
    cuts = np.rint(np.cumsum(proportions) / proportions.sum() * n).astype(np.int64)
    cuts[-1] = n
    return np.repeat(np.arange(len(proportions)), np.diff(cuts, prepend=0))


def _apportion(weights, total):
    """Integer shares of `total` proportional to `weights` (largest remainder, exact sum)."""
    raw = weights / weights.sum() * total
    shares = np.floor(raw).astype(np.int64)
    shares[np.argsort(shares - raw, kind="stable")[: total - shares.sum()]] += 1
    return shares


def _even_sizes(n, parts):
    return np.full(parts, n // parts, dtype=np.int64) + (np.arange(parts) < n % parts)


def _owner_from_sizes(order, sizes):
    owner = np.empty(len(order), dtype=np.int64)
    owner[order] = np.repeat(np.arange(len(sizes)), sizes)
    return owner


def _group_by_owner(owner, n_clients):
    order = np.argsort(owner, kind="stable").astype(np.int64)
    return np.split(order, np.cumsum(np.bincount(owner, minlength=n_clients))[:-1])


def _class_positions(labels, rng):
    """Shuffled positions of each class present in `labels`, in class order."""
    order = np.argsort(labels, kind="stable")
    counts = np.bincount(labels)
    counts = counts[counts > 0]
    return [rng.permutation(g) for g in np.split(order, np.cumsum(counts)[:-1])]


def _sorted_union(arrays):
    return np.sort(np.concatenate(arrays)).astype(np.int64)


def _js_distance(p, q):
    mid = (p + q) / 2
    divergence = (_kl_base2(p, mid) + _kl_base2(q, mid)) / 2
    return math.sqrt(min(1.0, max(0.0, divergence)))


def _kl_base2(p, q):
    mask = p > 0
    return float(np.sum(p[mask] * np.log2(p[mask] / q[mask])))


# ---------------------------------------------------------------------------------------------
# Validation: every message is one line, "partition.<field>: <value> <what is allowed>".


def _fail(field, value, requirement):
    raise PartitionError(f"partition.{field}: {value!r} {requirement}")


def _check_int(field, value, minimum):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        _fail(field, value, f"must be an integer >= {minimum}")
    if value < minimum:
        _fail(field, value, f"must be >= {minimum}")


def _check_alpha(alpha):
    if not (isinstance(alpha, numbers.Real) and math.isfinite(alpha) and alpha > 0):
        _fail("alpha", alpha, "must be > 0")


def _check_fraction(field, value):
    if not (isinstance(value, numbers.Real) and 0 <= value < 1):
        _fail(field, value, "must be in [0, 1)")


def _check_labels(labels, num_classes):
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.size == 0 or labels.dtype.kind not in "iu":
        _fail("labels", f"{labels.dtype}{list(labels.shape)}",
              "must be a non-empty 1-D integer array")
    if labels.min() < 0:
        _fail("labels", int(labels.min()), "is negative; class ids must be >= 0")
    if num_classes is not None and labels.max() >= num_classes:
        _fail("num_classes", num_classes, f"is too small for label {int(labels.max())}")
    return labels


def _check_shards(labels, n_clients, k):
    n_present = len(np.unique(labels))
    _check_int("classes_per_client", k, 1)
    if k > n_present:
        _fail("classes_per_client", k, f"exceeds the {n_present} classes present")
    if n_clients * k < n_present:
        _fail("classes_per_client", k,
              f"x {n_clients} clients cannot cover all {n_present} classes; every sample needs"
              " an owner, so raise classes_per_client or n_clients")


SCHEMES = tuple(SCHEME_DRAWERS)
