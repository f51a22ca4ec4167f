"""Reading the dispatcher's /metrics: counters, gauges and histogram quantiles."""

from __future__ import annotations

import math
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families


@dataclass(frozen=True)
class Histogram:
    """Cumulative buckets of one labelled histogram series."""

    buckets: list[tuple[float, float]]  # (upper bound, cumulative count), sorted
    count: float
    total: float

    def quantile(self, q: float) -> float | None:
        """Like PromQL's histogram_quantile: linear inside the bucket that holds rank q."""
        if self.count == 0:
            return None
        rank = q * self.count
        lower, below = 0.0, 0.0
        for bound, cumulative in self.buckets:
            if cumulative >= rank:
                if math.isinf(bound):
                    return lower  # beyond the last finite bucket: all we can say
                inside = cumulative - below
                return lower + (bound - lower) * ((rank - below) / inside if inside else 1.0)
            lower, below = bound, cumulative
        return lower

    def max_bound(self) -> float | None:
        """Upper bound of the highest non-empty bucket (inf if beyond the last)."""
        below = 0.0
        for bound, cumulative in self.buckets:
            if cumulative >= self.count and cumulative > below:
                return bound
            below = cumulative
        return None


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample, keyed by (name, sorted labels)."""
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def labelled(text: str, name: str, label: str) -> dict[str, float]:
    """``{label value: sample value}`` for one metric (counters: pass the ``_total`` name)."""
    return {
        dict(labels)[label]: value
        for (sample, labels), value in samples(text).items()
        if sample == name and label in dict(labels)
    }


def value(text: str, name: str) -> float:
    """An unlabelled sample (0 when absent)."""
    return samples(text).get((name, ()), 0.0)


def histogram(text: str, name: str, **match: str) -> Histogram:
    """The series of histogram ``name`` whose labels include ``match``."""
    buckets: list[tuple[float, float]] = []
    count = total = 0.0
    for (sample, labels), v in samples(text).items():
        d = dict(labels)
        if any(d.get(k) != want for k, want in match.items()):
            continue
        if sample == f"{name}_bucket":
            buckets.append((float(d["le"]), v))
        elif sample == f"{name}_count":
            count = v
        elif sample == f"{name}_sum":
            total = v
    return Histogram(sorted(buckets), count, total)


def merged(parts: list[Histogram]) -> Histogram:
    """Several instances' series of one histogram (same buckets) as one: the counts add up."""
    cumulative: dict[float, float] = {}
    for h in parts:
        for bound, count in h.buckets:
            cumulative[bound] = cumulative.get(bound, 0.0) + count
    return Histogram(sorted(cumulative.items()), sum(h.count for h in parts), sum(h.total for h in parts))


def since(before: Histogram, after: Histogram) -> Histogram:
    """What ``after`` counted since ``before`` (an empty ``before``: everything)."""
    earlier = dict(before.buckets)
    buckets = [(bound, count - earlier.get(bound, 0.0)) for bound, count in after.buckets]
    return Histogram(buckets, after.count - before.count, after.total - before.total)
