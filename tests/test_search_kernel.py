"""The architecture distance (vectorised edit distance) and the robust GP on top of it."""

from __future__ import annotations

import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aiperf.arch import Graph, add_skip, deepen, random_morph, seed, skip_sources, skip_targets, widen
from aiperf.search import arch_distances, features_from_graph, features_from_json
from aiperf.search._gp import GPError, fit_gp, robust_cholesky
from aiperf.search._kernel import _layer_cost, _part


def _reference(a: np.ndarray, b: np.ndarray) -> float:
    """The textbook O(m n) edit distance with unit insert/delete and the layer substitution cost."""
    m, n = len(a), len(b)
    d = [[float(i + j) if i == 0 or j == 0 else 0.0 for j in range(n + 1)] for i in range(m + 1)]
    for i in range(1, m + 1):
        for j in range(1, n + 1):
            sub = float(_layer_cost(a[i - 1], b[j - 1]))
            d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + sub)
    return d[m][n]


_layer = st.tuples(
    st.sampled_from([0.0, 1.0]),
    st.sampled_from([8.0, 16.0, 24.0, 64.0]),
    st.sampled_from([1.0, 3.0, 5.0]),
    st.sampled_from([1.0, 2.0]),
)
_seq = st.lists(_layer, min_size=0, max_size=9).map(lambda rows: np.asarray(rows, dtype=float).reshape(-1, 4))


@settings(max_examples=40, deadline=None)
@given(st.lists(_seq, min_size=1, max_size=5), st.lists(_seq, min_size=1, max_size=5))
def test_vectorised_edit_distance_equals_the_textbook_one(a: list[np.ndarray], b: list[np.ndarray]) -> None:
    got = _part(a, b, 4, _layer_cost)
    want = np.array([[_reference(x, y) for y in b] for x in a])
    np.testing.assert_allclose(got, want, atol=1e-4)


def _morphed(n: int, rng_seed: int) -> list[Graph]:
    rng = random.Random(rng_seed)
    graphs = [seed("resnet-tiny", (1, 8, 8), 10, 16), seed("resnet-small", (3, 16, 16), 10, 8)]
    while len(graphs) < n:
        graphs.append(random_morph(rng.choice(graphs), rng))
    return graphs


def test_features_do_not_depend_on_node_numbering_or_form() -> None:
    for g in _morphed(40, 1):
        a = features_from_graph(g)
        for form in (g.to_json(), g.canonical().to_json(), Graph.loads(g.dumps()).to_json()):
            b = features_from_json(form)
            np.testing.assert_array_equal(a.layers, b.layers)
            np.testing.assert_array_equal(a.skips, b.skips)


def test_distance_is_zero_to_itself_symmetric_and_counts_each_morph() -> None:
    base = seed("resnet-tiny", (1, 8, 8), 10, 16)
    f = features_from_graph
    relu = skip_targets(base)[-1]
    deeper = deepen(base, relu, 3)
    wider = widen(base, next(n for n, node in base.nodes.items() if node.op.kind == "conv"), 8)
    dst = skip_targets(base)[-1]
    skipped = add_skip(base, skip_sources(base, dst)[0], dst, "add")
    feats = [f(base), f(deeper), f(wider), f(skipped)]
    d = arch_distances(feats, feats)
    np.testing.assert_allclose(np.diag(d), 0.0, atol=1e-6)
    np.testing.assert_allclose(d, d.T, atol=1e-5)
    assert d[0, 1] == pytest.approx(1.0, abs=1e-6)  # one inserted layer
    assert 0.0 < d[0, 2] < 1.0  # a width change is a partial substitution
    assert d[0, 3] >= 1.0  # a new skip connection
    assert f(skipped).num_skips == f(base).num_skips + 1


def test_robust_cholesky_repairs_an_indefinite_matrix_and_refuses_nan() -> None:
    # distances violating the triangle inequality give an indefinite "kernel" matrix
    k = np.array([[1.0, 0.99, 0.0], [0.99, 1.0, 0.99], [0.0, 0.99, 1.0]])
    assert np.linalg.eigvalsh(k).min() < 0
    chol, jitter, _ = robust_cholesky(k)
    assert jitter > 0 and np.all(np.isfinite(chol))
    duplicate = np.ones((4, 4))  # four copies of one architecture: singular
    chol, _, _ = robust_cholesky(duplicate)
    assert np.all(np.isfinite(chol))
    with pytest.raises(GPError, match="non-finite"):
        robust_cholesky(np.array([[1.0, np.nan], [np.nan, 1.0]]))


def test_gp_interpolates_and_is_uncertain_far_away() -> None:
    graphs = _morphed(30, 2)
    feats = [features_from_graph(g) for g in graphs]
    d = arch_distances(feats, feats)
    d = 0.5 * (d + d.T)
    y = np.array([0.5 + 0.02 * f.depth for f in feats])
    model = fit_gp(d, y, float(y.mean()), float(y.std()))
    mean, std = model.predict(d[:5])
    np.testing.assert_allclose(mean * model.y_std + model.y_mean, y[:5], atol=0.03)
    far = arch_distances([feats[0]], feats) + 50.0
    _, far_std = model.predict(far)
    assert far_std[0] > 5 * std.max()


def test_gp_refuses_nan_rewards_and_tolerates_duplicates() -> None:
    graphs = _morphed(6, 3)
    feats = [features_from_graph(g) for g in graphs] * 2  # every architecture twice
    d = arch_distances(feats, feats)
    d = 0.5 * (d + d.T)
    y = np.linspace(0.5, 0.9, len(feats))
    model = fit_gp(d, y, float(y.mean()), float(y.std()))
    assert np.isfinite(model.log_marginal_likelihood)
    y[3] = np.nan
    with pytest.raises(GPError, match="not finite"):
        fit_gp(d, y, 0.7, 0.1)


def test_cached_distances_are_bit_identical_to_fresh_ones() -> None:
    from aiperf.search._bo import _GramCache

    graphs = _morphed(24, 4)
    feats = {g.content_hash(): features_from_graph(g) for g in graphs}
    keys = list(feats)
    warm = _GramCache()
    warm.get(keys[:10], feats.__getitem__, 1.0)
    warm.get(keys[5:18], feats.__getitem__, 1.0)
    grown = warm.get(keys, feats.__getitem__, 1.0)
    fresh = _GramCache().get(keys, feats.__getitem__, 1.0)
    assert np.array_equal(grown, fresh)
    assert np.array_equal(fresh, fresh.T)
