"""A wrong ``gf`` engine (tests/quality): the balanced 2x2 chart with the log singular values moving at half the
gradient-flow speed. The det sign is still kept by construction and the observations are still fitted, so every
RC20 bound holds along it; only the gradient-flow check can tell. Importing this module (``verify run --claims
tests/quality/perturb_gf_chart.py``) applies the change; :func:`patches` lists it for in-process use."""

from models import chart

_rhs = chart.rhs


def _half_speed_rhs(y, signs, depth, problem, be):
    f = _rhs(y, signs, depth, problem, be)
    return [f[0], f[1], 0.5 * f[2], 0.5 * f[3]]


def patches():
    return [(chart, "rhs", _half_speed_rhs)]


if __name__ != "__quality_dry__":
    for _obj, _name, _new in patches():
        setattr(_obj, _name, _new)
