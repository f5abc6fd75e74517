"""A wrong ``gf-mp`` engine (tests/quality): its balanced 2x2 chart with the log singular values moving at half
the gradient-flow speed (det sign kept by construction). Importing this module applies the change;
:func:`patches` lists it for in-process use."""

from models.engines.gf_mp import systems

_terms = systems.ChartSystem._terms


def _half_speed_terms(self, z, ctx, res, inv_L, two_over_L):
    f, loss, diss = _terms(self, z, ctx, res, inv_L, two_over_L)
    return [f[0], f[1], f[2] / 2, f[3] / 2], loss, diss


def patches():
    return [(systems.ChartSystem, "_terms", _half_speed_terms)]


if __name__ != "__quality_dry__":
    for _obj, _name, _new in patches():
        setattr(_obj, _name, _new)
