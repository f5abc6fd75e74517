"""A wrong ``gf-mp`` engine (tests/quality): its balanced 2x2 chart with the log singular values moving at half
the gradient-flow speed (det sign kept by construction). Importing this module applies the change;
:func:`patches` lists it for in-process use. It patches the chart's public right-hand side,
:meth:`models.engines.gf_mp.systems.ChartSystem.terms` (the Radau solver, its Jacobians and the loss and
dissipation all read the field through it), so no engine internal is reached."""

from models.engines.gf_mp import systems

_terms = systems.ChartSystem.terms


def _half_speed_terms(self, z):
    f, loss, diss = _terms(self, z)
    return [f[0], f[1], f[2] / 2, f[3] / 2], loss, diss


def patches():
    return [(systems.ChartSystem, "terms", _half_speed_terms)]


if __name__ != "__quality_dry__":
    for _obj, _name, _new in patches():
        setattr(_obj, _name, _new)
