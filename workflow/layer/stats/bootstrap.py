"""Subject-level bootstrap confidence intervals for layer saliency and model performance.

Why subjects, not scans: each subject contributes several scans whose scores are correlated (ICC about
0.7 in the design simulations). A bootstrap over scans treats them as independent and its nominal 95 %
intervals covered the truth 74-77 % of the time (design note ``attribution.md``); resampling subjects
restores 93-95 %.

How: ``scipy.stats.bootstrap`` has no cluster option, so its data is ``(np.arange(n_subjects),)`` and
the statistic maps a resample of subject indices to the pooled estimate through per-subject sufficient
statistics (sums and counts, or per-scan weights for AUC). BCa's jackknife then leaves out one subject
at a time, as it should. All columns of a table go through one ``bootstrap`` call (the installed scipy
accepts statistics that return one value per column), so every column shares the same subject
resamples: the CIs of different layers are computed on the same bootstrap worlds.

Resamples where a statistic is undefined (no scan of either class for AUC, no defined value for a
sparse column) give NaN. Scipy's BCa and percentile intervals are NaN as soon as one resample is NaN;
such columns get a percentile interval over the defined resamples instead, and ``ci_method`` says so.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

#: Performance metrics, in output order.
METRICS: tuple[str, ...] = ("auc", "balanced_accuracy", "sensitivity", "specificity")


#: Upper bound on the floats one batch of resamples holds, to bound memory at paper scale.
_BATCH_FLOATS = 2**24


@dataclass(frozen=True)
class BootstrapCI:
    """Estimates and CIs of ``k`` columns (arrays of length ``k``).

    ``ci_method`` per column: the requested method (``"BCa"``, ``"percentile"``, ...), ``"percentile"``
    where some resamples were undefined and the interval was taken over the defined ones, or ``"none"``
    where no interval exists (fewer than two subjects, constant values, undefined estimate).
    """

    columns: tuple[str, ...]
    estimate: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    n_subjects: np.ndarray
    n_scans: np.ndarray
    ci_method: tuple[str, ...]


def _subject_codes(subjects: Sequence[object] | np.ndarray) -> tuple[np.ndarray, int]:
    """Integer code per scan (subjects in sorted order) and the number of subjects."""
    labels = np.asarray(subjects).astype(str)
    _, codes = np.unique(labels, return_inverse=True)
    return codes.reshape(-1), int(codes.max()) + 1 if codes.size else 0


def subject_sums(values: np.ndarray, codes: np.ndarray, n_subjects: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-subject sums and counts of the defined (finite) values of each column, ``[n_subjects, k]`` each:
    the sufficient statistics every subject-level resample of a pooled mean is a matrix product with."""
    defined = np.isfinite(values)
    sums = np.zeros((n_subjects, values.shape[1]))
    counts = np.zeros((n_subjects, values.shape[1]))
    np.add.at(sums, codes, np.where(defined, values, 0.0))
    np.add.at(counts, codes, defined.astype(np.float64))
    return sums, counts


def _draw_counts(idx: np.ndarray, n_subjects: int) -> np.ndarray:
    """How often each subject is drawn, ``[R, n_subjects]``, for index rows ``idx [R, m]``.

    Turning draws into counts lets every statistic be a matrix product with per-subject sums, whatever
    the number of scans per subject.
    """
    rows = idx.shape[0]
    keys = (np.arange(rows)[:, None] * n_subjects + idx).reshape(-1)
    return np.bincount(keys, minlength=rows * n_subjects).reshape(rows, n_subjects).astype(np.float64)


def _columns_first(values: np.ndarray, lead: tuple[int, ...]) -> np.ndarray:
    """``[R, k]`` -> ``[k, *lead]``, the layout scipy expects from a vectorised multi-output statistic."""
    return np.moveaxis(values.reshape(*lead, values.shape[-1]), -1, 0)


def _run_bootstrap(
    statistic: Callable[[np.ndarray], np.ndarray],
    n_subjects: int,
    n_columns: int,
    n_resamples: int,
    confidence_level: float,
    seed: int,
    method: str,
    floats_per_resample: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """CIs of a vectorised subject-level statistic ``statistic(idx [R, m]) -> [R, k]``.

    Returns ``(estimate, low, high, ci_method)``; the caller decides beforehand which columns may get an
    interval at all (it passes only those).
    """
    everything = np.arange(n_subjects)
    with np.errstate(all="ignore"):
        estimate = statistic(everything[None, :])[0]
    nan = np.full(n_columns, np.nan)
    if n_subjects < 2 or n_resamples < 1 or n_columns == 0:
        return estimate, nan, nan.copy(), ["none"] * n_columns

    def vectorised(idx: np.ndarray, axis: int = -1) -> np.ndarray:
        counts_lead = idx.shape[:-1]
        out = statistic(idx.reshape(-1, idx.shape[-1]))
        return _columns_first(out, counts_lead)

    batch = max(1, _BATCH_FLOATS // max(1, floats_per_resample))
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        # Degenerate columns (e.g. a jackknife without spread) give NaN; we report that, not a warning.
        warnings.simplefilter("ignore", sps.DegenerateDataWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        result = sps.bootstrap(
            (everything,),
            vectorised,
            n_resamples=n_resamples,
            batch=batch,
            vectorized=True,
            confidence_level=confidence_level,
            method=method,
            rng=np.random.default_rng(seed),
        )
    low = np.array(result.confidence_interval.low, dtype=np.float64).reshape(n_columns)
    high = np.array(result.confidence_interval.high, dtype=np.float64).reshape(n_columns)
    ci_method = [method] * n_columns
    dist = np.asarray(result.bootstrap_distribution).reshape(n_columns, -1)
    partial = ~np.isfinite(dist).all(axis=1)
    if partial.any():
        low[partial], high[partial] = _percentile_defined(dist[partial], confidence_level)
        for j in np.flatnonzero(partial):
            ci_method[j] = "percentile"
    undefined = ~(np.isfinite(low) & np.isfinite(high))
    low[undefined], high[undefined] = np.nan, np.nan
    for j in np.flatnonzero(undefined):
        ci_method[j] = "none"
    return estimate, low, high, ci_method


def _percentile_defined(dist: np.ndarray, confidence_level: float) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval over the finite resamples of each row; NaN where fewer than half are finite.

    Conditional on the statistic being defined (e.g. both classes drawn): the only interval available
    when some resamples have no value, and honest as long as those are rare.
    """
    alpha = (1.0 - confidence_level) / 2.0
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        q = np.nanquantile(np.where(np.isfinite(dist), dist, np.nan), [alpha, 1.0 - alpha], axis=1)
    enough = np.isfinite(dist).mean(axis=1) >= 0.5
    return np.where(enough, q[0], np.nan), np.where(enough, q[1], np.nan)


def cluster_bootstrap_mean(
    values: np.ndarray,
    subjects: Sequence[object] | np.ndarray,
    n_resamples: int,
    confidence_level: float,
    seed: int,
    method: str = "BCa",
    columns: Sequence[str] | None = None,
) -> BootstrapCI:
    """Pooled mean over scans of each column, with a CI from resampling subjects.

    The estimate of a column is the mean of its defined (non-NaN) values over all scans, i.e. the sum
    of per-subject sums over the sum of per-subject counts: subjects with more scans weigh more, as in
    the paper's scan-level averages, while the uncertainty is that of the subjects.

    Args:
        values: ``[n_scans, k]`` (or ``[n_scans]``); NaN (or inf) = not defined for that scan (e.g. the
            density of a layer absent from the scan).
        subjects: subject label of each scan.
        n_resamples, confidence_level, seed, method: as in ``scipy.stats.bootstrap``; the same seed
            gives the same numbers.
        columns: optional column names (default ``"0", "1", ...``).

    Returns:
        ``BootstrapCI``; columns with fewer than two subjects, constant values or no defined value get
        the estimate with a NaN CI (``ci_method == "none"``), silently.
    """
    x = np.asarray(values, dtype=np.float64)
    x = x[:, None] if x.ndim == 1 else x
    codes, n_subjects = _subject_codes(subjects)
    if x.shape[0] != codes.size:
        raise ValueError(f"{x.shape[0]} rows of values but {codes.size} subject labels")
    k = x.shape[1]
    names = tuple(columns) if columns is not None else tuple(str(j) for j in range(k))
    defined = np.isfinite(x)
    sums, counts = subject_sums(x, codes, n_subjects)
    n_subjects_col = (counts > 0).sum(axis=0)
    with np.errstate(all="ignore"):
        estimate = sums.sum(axis=0) / counts.sum(axis=0)
        spread = np.max(np.where(defined, x, -np.inf), axis=0) - np.min(np.where(defined, x, np.inf), axis=0)
    ok = np.isfinite(estimate) & (n_subjects_col >= 2) & (spread > 0)

    sums_ok, counts_ok = sums[:, ok], counts[:, ok]

    def statistic(idx: np.ndarray) -> np.ndarray:
        drawn = _draw_counts(idx, n_subjects)
        return (drawn @ sums_ok) / (drawn @ counts_ok)

    low = np.full(k, np.nan)
    high = np.full(k, np.nan)
    ci_method = ["none"] * k
    n_ok = int(ok.sum())
    if n_ok:
        _, lo, hi, used = _run_bootstrap(
            statistic, n_subjects, n_ok, n_resamples, confidence_level, seed, method,
            floats_per_resample=n_subjects + 2 * n_ok,
        )
        low[ok], high[ok] = lo, hi
        for j, m in zip(np.flatnonzero(ok), used):
            ci_method[j] = m
    return BootstrapCI(names, estimate, low, high, n_subjects_col, defined.sum(axis=0), tuple(ci_method))


@dataclass(frozen=True)
class GapParts:
    """Per-subject sufficient statistics of a class difference in pooled means, ``[n_subjects, k]`` each.

    A subject's scans all carry its label, so a subject's sums go to one class: resampling subjects
    resamples the classes too, and every resample recomputes both class means (and so the prevalence).
    """

    sums_pos: np.ndarray
    counts_pos: np.ndarray
    sums_neg: np.ndarray
    counts_neg: np.ndarray

    @property
    def n_subjects(self) -> int:
        return int(self.sums_pos.shape[0])

    def gap(self, drawn: np.ndarray) -> np.ndarray:
        """``[R, k]`` pooled mean of the patients' scans minus the controls', for draw counts ``[R, n_subjects]``;
        NaN where a resample has no defined scan of a class."""
        with np.errstate(all="ignore"):
            return (drawn @ self.sums_pos) / (drawn @ self.counts_pos) - (drawn @ self.sums_neg) / (drawn @ self.counts_neg)

    def columns(self, keep: np.ndarray) -> GapParts:
        return GapParts(self.sums_pos[:, keep], self.counts_pos[:, keep], self.sums_neg[:, keep], self.counts_neg[:, keep])


def gap_parts(values: np.ndarray, labels: np.ndarray, subjects: Sequence[object] | np.ndarray) -> GapParts:
    """:class:`GapParts` of ``values [n_scans, k]`` (NaN = undefined) with 0/1 ``labels [n_scans]``; raises if a
    subject's scans disagree on the label."""
    x = np.asarray(values, dtype=np.float64)
    x = x[:, None] if x.ndim == 1 else x
    y = np.asarray(labels, dtype=np.float64)
    codes, n_subjects = _subject_codes(subjects)
    if x.shape[0] != codes.size or y.shape != (codes.size,):
        raise ValueError(f"{x.shape[0]} rows of values, {y.size} labels and {codes.size} subject labels")
    if not np.isin(y, (0.0, 1.0)).all():
        raise ValueError("labels must be 0 or 1")
    subject_label = np.zeros(n_subjects)
    subject_label[codes] = y
    if not np.array_equal(subject_label[codes], y):
        raise ValueError("a subject has scans with different labels")
    sums, counts = subject_sums(x, codes, n_subjects)
    pos = (subject_label == 1.0)[:, None]
    return GapParts(np.where(pos, sums, 0.0), np.where(pos, counts, 0.0), np.where(pos, 0.0, sums), np.where(pos, 0.0, counts))


def cluster_bootstrap_gap(
    values: np.ndarray,
    labels: np.ndarray,
    subjects: Sequence[object] | np.ndarray,
    n_resamples: int,
    confidence_level: float,
    seed: int,
    method: str = "BCa",
) -> BootstrapCI:
    """Patients-minus-controls difference in pooled means of each column, with a subject-level CI.

    Why not a linearised per-scan value: centring and prevalence fixed at their full-sample values and
    per-scan products resampled give an interval that is only right at 50/50 prevalence (at 25 %: coverage
    0.91 at no effect, 1.00 at twice the needed width at a large one). Here every resample draws subjects
    with replacement, so the number of patients varies, and recomputes both class means; BCa's jackknife
    leaves out one subject at a time. A resample without a patient or a control has no gap; such columns
    get a percentile interval over the defined resamples (``ci_method``).

    Args:
        values: ``[n_scans, k]`` (or ``[n_scans]``) per-scan scores, e.g. a layer's contribution; NaN = undefined.
        labels: ``[n_scans]`` 0/1, constant within a subject.
        subjects: subject label per scan. Others as in :func:`cluster_bootstrap_mean`.
    """
    parts = gap_parts(values, labels, subjects)
    k = parts.sums_pos.shape[1]
    everyone = np.ones((1, parts.n_subjects))
    estimate = parts.gap(everyone)[0]
    n_pos = (parts.counts_pos > 0).sum(axis=0)
    n_neg = (parts.counts_neg > 0).sum(axis=0)
    ok = np.isfinite(estimate) & (n_pos >= 2) & (n_neg >= 2)
    kept = parts.columns(ok)
    low, high = np.full(k, np.nan), np.full(k, np.nan)
    ci_method = ["none"] * k
    if ok.any():
        _, lo, hi, used = _run_bootstrap(
            lambda idx: kept.gap(_draw_counts(idx, parts.n_subjects)), parts.n_subjects, int(ok.sum()),
            n_resamples, confidence_level, seed, method, floats_per_resample=parts.n_subjects + 4 * int(ok.sum()),
        )
        low[ok], high[ok] = lo, hi
        for j, m in zip(np.flatnonzero(ok), used):
            ci_method[j] = m
    n_scans = (parts.counts_pos + parts.counts_neg).sum(axis=0)
    return BootstrapCI(tuple(str(j) for j in range(k)), estimate, low, high, n_pos + n_neg, n_scans, tuple(ci_method))


@dataclass(frozen=True)
class _MetricData:
    """Sufficient statistics of pooled predictions for weighted metrics under subject resampling."""

    codes_sorted: np.ndarray  # subject code of each scan, scans sorted by score
    positive_sorted: np.ndarray  # 1.0 for positive scans, same order
    tie_starts: np.ndarray  # first position of each distinct score in the sorted order
    confusion: np.ndarray  # [n_subjects, 4]: positives, true positives, negatives, true negatives
    n_subjects: int


def _metric_data(
    labels: np.ndarray, scores: np.ndarray, codes: np.ndarray, n_subjects: int, threshold: float
) -> _MetricData:
    """Precompute once what every resample needs: the score order and per-subject confusion counts."""
    order = np.argsort(scores, kind="stable")
    s = scores[order]
    tie_starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
    positive = labels == 1
    predicted = scores >= threshold
    per_scan = np.stack([positive, positive & predicted, ~positive, ~positive & ~predicted], axis=1)
    confusion = np.zeros((n_subjects, 4))
    np.add.at(confusion, codes, per_scan.astype(np.float64))
    return _MetricData(codes[order], positive[order].astype(np.float64), tie_starts, confusion, n_subjects)


def weighted_auc(weights: np.ndarray, positive_sorted: np.ndarray, tie_starts: np.ndarray) -> np.ndarray:
    """AUC of each row of scan ``weights [R, n]`` (scans sorted by score), as sklearn's
    ``roc_auc_score(y, score, sample_weight=w)``: P(score+ > score-) + P(tie) / 2 under the weights.

    One sort for all resamples: per distinct score, the weighted positives and negatives; each positive
    group beats the negative weight below it and ties half of its own. NaN where a class has no weight.
    """
    w_pos = weights * positive_sorted
    w_neg = weights - w_pos
    if tie_starts.size < weights.shape[1]:
        w_pos = np.add.reduceat(w_pos, tie_starts, axis=1)
        w_neg = np.add.reduceat(w_neg, tie_starts, axis=1)
    below = np.cumsum(w_neg, axis=1) - w_neg
    wins = (w_pos * (below + 0.5 * w_neg)).sum(axis=1)
    with np.errstate(all="ignore"):
        return wins / (w_pos.sum(axis=1) * w_neg.sum(axis=1))


def _metric_statistic(data: _MetricData) -> Callable[[np.ndarray], np.ndarray]:
    def statistic(idx: np.ndarray) -> np.ndarray:
        drawn = _draw_counts(idx, data.n_subjects)
        auc = weighted_auc(drawn[:, data.codes_sorted], data.positive_sorted, data.tie_starts)
        pos, tp, neg, tn = (drawn @ data.confusion).T
        with np.errstate(all="ignore"):
            sensitivity, specificity = tp / pos, tn / neg
        return np.stack([auc, (sensitivity + specificity) / 2.0, sensitivity, specificity], axis=1)

    return statistic


def cluster_bootstrap_metric(
    labels: np.ndarray,
    scores: np.ndarray,
    subjects: Sequence[object] | np.ndarray,
    n_resamples: int,
    confidence_level: float,
    seed: int,
    method: str = "BCa",
    threshold: float = 0.5,
) -> BootstrapCI:
    """AUC, balanced accuracy, sensitivity and specificity of pooled predictions, CIs over subjects.

    A resample draws subjects with replacement; every scan of a subject drawn ``m`` times counts ``m``
    times (scan weights). AUC follows sklearn's ``roc_auc_score`` (ties count one half); a scan is
    predicted positive when ``score >= threshold``. A resample without one of the classes has no AUC,
    sensitivity or specificity; such a metric gets a percentile CI over the defined resamples
    (``ci_method``), because scipy's BCa is undefined with NaN resamples.

    Args:
        labels: ``[n]`` 0/1 true classes. scores: ``[n]`` predicted probabilities of class 1.
        subjects: ``[n]`` subject labels. Others as in ``cluster_bootstrap_mean``.
    """
    y = np.asarray(labels)
    p = np.asarray(scores, dtype=np.float64)
    if y.shape != p.shape or y.ndim != 1:
        raise ValueError("labels and scores must be 1-D arrays of the same length")
    if not np.isin(y, (0, 1)).all():
        raise ValueError("labels must be 0 or 1")
    if not np.isfinite(p).all():
        raise ValueError("scores must be finite")
    codes, n_subjects = _subject_codes(subjects)
    if codes.size != y.size:
        raise ValueError("one subject label per prediction needed")
    data = _metric_data(y.astype(int), p, codes, n_subjects, threshold)
    estimate, low, high, ci_method = _run_bootstrap(
        _metric_statistic(data), n_subjects, len(METRICS), n_resamples, confidence_level, seed, method,
        floats_per_resample=4 * y.size + n_subjects,
    )
    undefined = ~np.isfinite(estimate)
    low[undefined], high[undefined] = np.nan, np.nan
    ci_method = ["none" if u else m for u, m in zip(undefined, ci_method)]
    return BootstrapCI(
        METRICS, estimate, low, high, np.full(len(METRICS), n_subjects), np.full(len(METRICS), y.size), tuple(ci_method)
    )


