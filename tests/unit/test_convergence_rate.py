"""rc20.prop.convergence_depth2 checks the derived rate loss ~ (6t)^(-2/3)/2 (not a threshold fitted to a run):
the true flow holds, and the same check with a wrong constant in the rate is violated."""

import pytest

import properties  # noqa: F401
import properties.rc20_props as rc20_claims
from properties.api import CLAIMS


def test_the_derived_rate_holds():
    out = CLAIMS["rc20.prop.convergence_depth2"].run_check({"alpha": 0.5})
    assert out.status == "holds"


@pytest.mark.parametrize("rate", [3.0, 12.0])
def test_a_wrong_rate_is_violated(monkeypatch, rate):
    monkeypatch.setattr(rc20_claims, "CONV_RATE", rate)
    assert CLAIMS["rc20.prop.convergence_depth2"].run_check({"alpha": 0.5}).status == "violated"
