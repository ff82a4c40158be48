"""A small, pure Prometheus registry: counters, gauges and histograms with labels, rendered in
the text exposition format 0.0.4 (``text/plain; version=0.0.4``).

Written here rather than depending on ``prometheus_client`` (not a dependency of HERO): the
gateway needs a handful of metrics, some kept (HTTP requests), most computed at scrape time
from the store and the read models, which :func:`render` takes as plain metric objects.
"""

from __future__ import annotations

import math
import re
import threading
from bisect import bisect_left
from collections.abc import Iterable, Mapping, Sequence
from typing import ClassVar

__all__ = [
    "CONTENT_TYPE",
    "DEFAULT_BUCKETS",
    "Counter",
    "Gauge",
    "Histogram",
    "Metric",
    "Registry",
    "escape_help",
    "escape_label_value",
    "format_value",
    "render",
]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
DEFAULT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

_METRIC_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")

LabelValues = tuple[str, ...]


def escape_label_value(value: str) -> str:
    """Backslash, double quote and line feed escaped, as the text format requires."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def escape_help(text: str) -> str:
    """HELP text: backslash and line feed escaped (quotes stay as they are)."""
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def format_value(value: float) -> str:
    """``+Inf``, ``-Inf``, ``NaN``; integral values without a fraction; others as repr."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer() and abs(value) < 2**53:
        return str(int(value))
    return repr(float(value))


def _labels(pairs: Iterable[tuple[str, str]]) -> str:
    body = ",".join(f'{name}="{escape_label_value(value)}"' for name, value in pairs)
    return f"{{{body}}}" if body else ""


class Metric:
    """A metric family: a name, help text, label names and a value per label set."""

    type: ClassVar[str] = "untyped"
    _reserved: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, name: str, help: str, labelnames: Sequence[str] = ()):
        if not _METRIC_NAME.fullmatch(name):  # the whole name: `$` lets a final newline by
            raise ValueError(f"invalid metric name {name!r}")
        for label in labelnames:
            if not _LABEL_NAME.fullmatch(label) or label.startswith("__"):
                raise ValueError(f"invalid label name {label!r} for {name}")
            if label in self._reserved:
                raise ValueError(f"label {label!r} is reserved in a {self.type}")
        if len(set(labelnames)) != len(labelnames):
            raise ValueError(f"duplicate label names for {name}: {labelnames}")
        self.name = name
        self.help = help
        self.labelnames = tuple(labelnames)
        self._lock = threading.Lock()

    def _key(self, labels: Mapping[str, object]) -> LabelValues:
        if set(labels) != set(self.labelnames):
            raise ValueError(f"{self.name} takes labels {self.labelnames}, got {sorted(labels)}")
        return tuple(str(labels[name]) for name in self.labelnames)

    def samples(self) -> Iterable[tuple[str, LabelValues, tuple[tuple[str, str], ...], float]]:
        """(name suffix, label values, extra labels, value) for each sample line."""
        raise NotImplementedError

    def render(self) -> str:
        lines = [f"# HELP {self.name} {escape_help(self.help)}", f"# TYPE {self.name} {self.type}"]
        for suffix, values, extra, value in self.samples():
            pairs = [*zip(self.labelnames, values, strict=True), *extra]
            lines.append(f"{self.name}{suffix}{_labels(pairs)} {format_value(value)}")
        return "\n".join(lines) + "\n"


class _Scalar(Metric):
    def __init__(self, name: str, help: str, labelnames: Sequence[str] = ()):
        super().__init__(name, help, labelnames)
        self._values: dict[LabelValues, float] = {}
        if not self.labelnames:
            self._values[()] = 0.0

    def get(self, **labels: object) -> float:
        return self._values.get(self._key(labels), 0.0)

    def samples(self) -> Iterable[tuple[str, LabelValues, tuple[tuple[str, str], ...], float]]:
        with self._lock:
            items = sorted(self._values.items())
        return [("", values, (), value) for values, value in items]


class Counter(_Scalar):
    """Only goes up (a restart starts it again at 0, which Prometheus reads as a reset)."""

    type = "counter"

    def inc(self, amount: float = 1.0, /, **labels: object) -> None:
        if amount < 0:
            raise ValueError(f"{self.name}: a counter cannot decrease (inc by {amount})")
        key = self._key(labels)
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount

    def set_total(self, total: float, /, **labels: object) -> None:
        """Expose a total counted elsewhere (a count read from the store, say)."""
        if total < 0:
            raise ValueError(f"{self.name}: a counter cannot be negative ({total})")
        key = self._key(labels)
        with self._lock:
            self._values[key] = float(total)


class Gauge(_Scalar):
    type = "gauge"

    def set(self, value: float, /, **labels: object) -> None:
        key = self._key(labels)
        with self._lock:
            self._values[key] = float(value)

    def inc(self, amount: float = 1.0, /, **labels: object) -> None:
        key = self._key(labels)
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount


class Histogram(Metric):
    """Cumulative buckets (``le``, ending in ``+Inf``), ``_sum`` and ``_count`` per label set."""

    type = "histogram"
    _reserved = frozenset({"le"})

    def __init__(
        self,
        name: str,
        help: str,
        labelnames: Sequence[str] = (),
        buckets: Sequence[float] = DEFAULT_BUCKETS,
    ):
        super().__init__(name, help, labelnames)
        bounds = [float(b) for b in buckets if not math.isinf(b)]
        if not bounds or sorted(set(bounds)) != bounds:
            raise ValueError(f"{name}: buckets must be increasing and not empty: {buckets}")
        self.buckets = tuple(bounds)
        # per label set: a count per finite bucket (not cumulative) + overflow, the sum
        self._counts: dict[LabelValues, list[int]] = {}
        self._sums: dict[LabelValues, float] = {}

    def observe(self, value: float, /, **labels: object) -> None:
        key = self._key(labels)
        index = bisect_left(self.buckets, value)  # the first bound >= value (le is inclusive)
        with self._lock:
            counts = self._counts.get(key)
            if counts is None:
                counts = self._counts[key] = [0] * (len(self.buckets) + 1)
                self._sums[key] = 0.0
            counts[index] += 1
            self._sums[key] += value

    def count(self, **labels: object) -> int:
        return sum(self._counts.get(self._key(labels), ()))

    def samples(self) -> Iterable[tuple[str, LabelValues, tuple[tuple[str, str], ...], float]]:
        with self._lock:
            items = sorted((k, list(v), self._sums[k]) for k, v in self._counts.items())
        out: list[tuple[str, LabelValues, tuple[tuple[str, str], ...], float]] = []
        for values, counts, total in items:
            running = 0
            for bound, n in zip((*self.buckets, math.inf), counts, strict=True):
                running += n
                out.append(("_bucket", values, (("le", format_value(bound)),), running))
            out.append(("_sum", values, (), total))
            out.append(("_count", values, (), running))
        return out


class Registry:
    """The metrics a process keeps between scrapes, by name."""

    def __init__(self) -> None:
        self._metrics: dict[str, Metric] = {}
        self._lock = threading.Lock()

    def register(self, metric: Metric) -> Metric:
        with self._lock:
            if metric.name in self._metrics:
                raise ValueError(f"metric {metric.name!r} is already registered")
            self._metrics[metric.name] = metric
        return metric

    def counter(self, name: str, help: str, labelnames: Sequence[str] = ()) -> Counter:
        metric = Counter(name, help, labelnames)
        self.register(metric)
        return metric

    def gauge(self, name: str, help: str, labelnames: Sequence[str] = ()) -> Gauge:
        metric = Gauge(name, help, labelnames)
        self.register(metric)
        return metric

    def histogram(
        self,
        name: str,
        help: str,
        labelnames: Sequence[str] = (),
        buckets: Sequence[float] = DEFAULT_BUCKETS,
    ) -> Histogram:
        metric = Histogram(name, help, labelnames, buckets)
        self.register(metric)
        return metric

    def metrics(self) -> list[Metric]:
        with self._lock:
            return list(self._metrics.values())

    def render(self, extra: Iterable[Metric] = ()) -> str:
        return render([*self.metrics(), *extra])


def render(metrics: Iterable[Metric]) -> str:
    """The exposition of ``metrics``, one family each (a repeated name is an error)."""
    seen: set[str] = set()
    parts = []
    for metric in metrics:
        if metric.name in seen:
            raise ValueError(f"metric {metric.name!r} appears twice")
        seen.add(metric.name)
        parts.append(metric.render())
    return "".join(parts)
