"""The quantile sketch: 1% relative accuracy, exact merging, bounded memory."""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest

from infra.metrics import QuantileSketch

QS = (0.5, 0.95, 0.99, 0.999)
TOL = 0.01 * (1 + 1e-9)  # the guarantee, plus float rounding at bucket edges


def _samples(kind: str, n: int, seed: int = 7) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if kind == "lognormal":
        return rng.lognormal(mean=-3.0, sigma=1.5, size=n)
    # bimodal: cache hits around 0.4 ms and model calls around 900 ms
    a = rng.lognormal(mean=math.log(0.0004), sigma=0.3, size=n // 2)
    b = rng.lognormal(mean=math.log(0.9), sigma=0.4, size=n - n // 2)
    return rng.permutation(np.concatenate([a, b]))


@pytest.mark.parametrize("kind", ["lognormal", "bimodal"])
def test_quantiles_within_one_percent_of_numpy_on_a_million_samples(kind: str) -> None:
    """p50/p95/p99/p99.9 of 10^6 samples are within 1% of numpy's exact (method="higher") quantiles."""
    data = _samples(kind, 1_000_000)
    sk = QuantileSketch()
    sk.add_many(data)
    assert sk.count == data.size
    for q in QS:
        exact = float(np.quantile(data, q, method="higher"))
        got = sk.quantile(q)
        assert abs(got - exact) / exact <= TOL, (kind, q, got, exact)
    assert sk.min == data.min() and sk.max == data.max()
    assert sk.sum == pytest.approx(float(data.sum()), rel=1e-12)


def test_scalar_add_gives_the_same_quantiles_as_the_vectorised_path() -> None:
    data = _samples("lognormal", 20_000)
    a, b = QuantileSketch(), QuantileSketch()
    a.add_many(data)
    b.add_many(data.tolist())  # plain floats: one add() each
    for q in QS:
        assert a.quantile(q) == pytest.approx(b.quantile(q), rel=0.0201)
    assert a.count == b.count


@pytest.mark.parametrize("kind", ["lognormal", "bimodal"])
def test_merging_two_halves_equals_one_sketch(kind: str) -> None:
    data = _samples(kind, 200_000)
    whole, left, right = QuantileSketch(), QuantileSketch(), QuantileSketch()
    whole.add_many(data)
    left.add_many(data[:100_000])
    right.add_many(data[100_000:])
    left.merge(right)
    assert left == whole
    assert left.quantiles(QS) == whole.quantiles(QS)


def test_memory_is_the_same_after_ten_thousand_and_ten_million_observations() -> None:
    """Bucket count and the size of the bucket store don't grow with the number of observations."""
    rng = np.random.default_rng(3)

    def build(n: int) -> QuantileSketch:
        sk = QuantileSketch()
        for start in range(0, n, 1_000_000):  # bounded chunks: bounded peak memory in the test
            m = min(1_000_000, n - start)
            sk.add_many(np.exp(rng.uniform(math.log(1e-3), math.log(1.0), size=m)))  # 1 ms .. 1 s
        return sk

    small, big = build(10_000), build(10_000_000)
    assert big.count == 10_000_000
    assert small.bin_count == big.bin_count <= small.max_bins
    assert sys.getsizeof(small.bins) == sys.getsizeof(big.bins)


def test_collapsing_bounds_memory_and_keeps_high_quantiles_accurate() -> None:
    """Past max_bins the lowest buckets fold together; p99 stays within 1%, memory stays bounded."""
    data = np.random.default_rng(5).lognormal(0.0, 3.0, size=200_000)  # ~1100 buckets' worth of range
    sk = QuantileSketch(max_bins=1024)
    sk.add_many(data[:100_000])
    for v in data[100_000:101_000].tolist():  # the scalar path collapses too
        sk.add(v)
    sk.add_many(data[101_000:])
    assert sk.bin_count == 1024
    for q in (0.95, 0.99, 0.999):
        exact = float(np.quantile(data, q, method="higher"))
        assert abs(sk.quantile(q) - exact) / exact <= TOL
    sizes = {sys.getsizeof(sk.bins)}
    sk.add_many(data)
    sizes.add(sys.getsizeof(sk.bins))
    assert len(sizes) == 1


def test_zero_and_negative_values_sort_correctly() -> None:
    sk = QuantileSketch()
    for v in (-5.0, -1.0, 0.0, 0.0, 2.0, 10.0):
        sk.add(v)
    assert sk.quantile(0.0) == -5.0  # clamped to the exact min
    assert sk.quantile(1.0) == 10.0
    assert abs(sk.quantile(0.2) - -1.0) <= TOL + 1e-12
    assert sk.quantile(0.4) == 0.0
    assert abs(sk.quantile(0.8) - 2.0) / 2.0 <= TOL


def test_empty_sketch_has_nan_quantiles_and_bad_input_is_refused() -> None:
    sk = QuantileSketch()
    assert math.isnan(sk.quantile(0.5))
    with pytest.raises(ValueError, match="quantile must be in"):
        sk.quantile(1.5)
    with pytest.raises(ValueError, match="non-finite"):
        sk.add(math.inf)
    with pytest.raises(ValueError, match="non-finite"):
        sk.add_many(np.array([1.0, math.nan]))
    with pytest.raises(ValueError, match="relative_accuracy"):
        QuantileSketch(relative_accuracy=0.0)
    with pytest.raises(ValueError, match="different relative accuracy"):
        sk.merge(QuantileSketch(relative_accuracy=0.02))


def test_every_value_is_within_relative_accuracy_of_its_bucket_representative() -> None:
    sk = QuantileSketch()
    for v in np.geomspace(1e-9, 1e9, 5001).tolist():
        rep = sk.value_of(sk.key(v))
        assert abs(rep - v) / v <= TOL
