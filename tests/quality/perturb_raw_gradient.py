"""A wrong ``gf`` raw-factor path (tests/quality): every factor's gradient scaled by 2. Along the raw factors this
is gradient flow run at twice the speed: the path as a curve, the det sign and every bound in terms of the loss
are unchanged, so only the gradient-flow check (the tangent at each recorded time) can tell. Importing this
module applies the change; :func:`patches` lists it for in-process use."""

from models.engines import gf

_factor_grads = gf.factor_grads


def _scaled_factor_grads(factors, G):
    return [2.0 * g for g in _factor_grads(factors, G)]


def patches():
    return [(gf, "factor_grads", _scaled_factor_grads)]


if __name__ != "__quality_dry__":
    for _obj, _name, _new in patches():
        setattr(_obj, _name, _new)
