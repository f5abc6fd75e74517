"""A wrong ``gf-mp`` raw-factor path (tests/quality): the loss it reports for a state is a tenth of the true one. It
integrates the right flow and records the right state, factors, dets and tangent, and its reference run agrees with
it (so ``loss_err`` is small): it only reports, and stops at, a loss it never reached. Only the tie of the recorded
loss to the recorded state (``properties.flow_check.record_ties``) can tell. Importing this module applies the
change; :func:`patches` lists it for in-process use."""

from models.engines.gf_mp import systems

_observe = systems.RawSystem.observe


def _underreporting_observe(self, z):
    w, loss, sign, factors = _observe(self, z)
    return w, loss / 10, sign, factors


def patches():
    return [(systems.RawSystem, "observe", _underreporting_observe)]


if __name__ != "__quality_dry__":
    for _obj, _name, _new in patches():
        setattr(_obj, _name, _new)
