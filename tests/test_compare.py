"""compare(): the metrics are right, and a wrong element is found, located and counted."""

import numpy as np
import pytest

from harness.compare import compare
from harness.tolerances import ANALYTIC, FINITE_DIFFERENCE, Tolerance

TOL = Tolerance(rtol=1e-6, atol=1e-8, reason="test")


def cmp(a, b, kind=ANALYTIC, J=0.0, tol=TOL):
    return compare("c", "dW1", "a", np.asarray(a, float), "b", np.asarray(b, float), kind,
                   "float64", tol, J)


def test_identical_arrays_pass_with_zero_metrics():
    r = cmp([[1.0, -2.0], [3.0, 0.0]], [[1.0, -2.0], [3.0, 0.0]])
    assert r.passed and r.max_abs == 0 and r.norm_rel == 0 and r.n_off == 0 and r.tol_used == 0
    assert r.n_checked == r.n_total == 4


def test_one_wrong_element_is_located_and_measured():
    a = np.array([[1.0, -2.0, 3.0], [4.0, 5.0, 6.0]])
    b = a.copy()
    b[1, 2] += 1e-3
    r = cmp(a, b)
    assert not r.passed
    assert r.n_off == 1 and r.index == (1, 2)
    assert r.max_abs == pytest.approx(1e-3)
    assert r.max_rel == pytest.approx(1e-3 / 6.001)
    assert r.norm_rel == pytest.approx(1e-3 / (np.linalg.norm(a) + np.linalg.norm(b)))
    assert r.scale == pytest.approx(6.001)
    msg = r.message()
    assert "c dW1 a vs b: 1 / 6 elements off (16.7%)" in msg and "at index (1, 2)" in msg


def test_the_boundary_is_atol_times_scale_plus_rtol_times_magnitude():
    a = np.array([100.0, 1.0])
    allowed_at_1 = TOL.atol * 100.0 + TOL.rtol * 1.0
    assert cmp(a, a + [0, 0.99 * allowed_at_1]).passed
    assert not cmp(a, a + [0, 1.01 * allowed_at_1]).passed


def test_atol_is_relative_to_the_quantity_so_tiny_gradients_are_checked_too():
    a = np.array([1e-9, 2e-9])
    assert not cmp(a, 2 * a).passed  # a factor of 2 on a tiny gradient is still caught


def test_finite_difference_pairs_include_J_in_the_scale():
    a = np.array([0.0, 0.0])
    b = np.array([1e-12, -1e-12])  # fd round-off on a zero gradient
    assert not cmp(a, b).passed
    assert cmp(a, b, kind=FINITE_DIFFERENCE, J=2.0).passed
    assert not cmp(a, b + 1e-6, kind=FINITE_DIFFERENCE, J=2.0).passed


def test_nan_and_inf_are_reported_as_such_not_as_a_difference():
    r = cmp([1.0, 2.0], [1.0, np.nan])
    assert not r.passed and r.index == (1,)
    assert "1 non-finite in b" in r.note and "NaN/Inf" in r.message()
    r = cmp([np.inf, 2.0], [np.inf, 2.0])
    assert not r.passed and "1 non-finite in a" in r.note and "1 non-finite in b" in r.note


def test_masked_elements_are_skipped_and_counted():
    a = np.ma.MaskedArray([1.0, 2.0, 3.0], mask=[False, True, False])
    b = np.array([1.0, 999.0, 3.0])
    r = compare("c", "dW1", "fd", a, "manual", b, ANALYTIC, "float64", TOL)
    assert r.passed and r.n_checked == 2 and r.n_total == 3


def test_shape_mismatch_fails_with_a_note():
    r = cmp(np.zeros((2, 3)), np.zeros((3, 2)))
    assert not r.passed and "shape (2, 3) vs (3, 2)" in r.message()


def test_scalar_J():
    r = compare("c", "J", "a", np.asarray(1.0), "b", np.asarray(1.0 + 1e-3), ANALYTIC, "float64", TOL)
    assert not r.passed and r.index == () and r.n_off == 1


def test_finite_values_whose_difference_overflows_are_a_value_difference():
    r = cmp([1e308], [-1e308])
    assert not r.passed and not r.note and r.n_off == 1 and r.index == (0,)


def test_huge_values_keep_a_finite_norm_and_denormal_noise_passes():
    assert cmp([1e200, 1e200], [1e200, 1e200]).norm_rel == 0.0
    assert cmp([1e200, 1e200], [1e200, 2e200]).norm_rel > 0.1
    assert cmp([0.0], [5e-324]).passed  # an allowance that underflowed to 0 still admits it
