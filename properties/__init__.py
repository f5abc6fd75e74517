"""The claims: executable properties of the implicit-regularization papers, and the public claim API.

``import properties`` registers every built-in claim in :data:`properties.api.CLAIMS`. A researcher's own module
needs only this package::

    from properties import claim, Outcome, strategies as S

    @claim("mine.my_bound", title="...", source="...", statement="...", kind="trajectory",
           strategy=lambda dropped: S.fixed_dicts(depth=S.depths(2, 4), scale=S.log_scale(-2, 0), seed=S.seeds()))
    def my_bound(inputs, dropped):
        ...
        return Outcome(margin, error, {"why": "..."}, engine="gf")

and runs with ``verify run --claims my_module`` (see ``properties/examples/my_claims.py``).
"""

from . import measures, stats, strategies
from .api import CLAIMS, Claim, Expectation, Hyp, Kind, Outcome, claim, register
from ._common import combine, error_unknown, escalate, identity_outcome, point_outcome, rc20_setting

from . import rc20 as _rc20  # noqa: E402,F401  -- registers the built-in claims
from . import rc20_props as _rc20_props  # noqa: E402,F401
from . import rc20_static as _rc20_static  # noqa: E402,F401
from . import rc20_det_raw as _rc20_det_raw  # noqa: E402,F401
from . import achl19 as _achl19  # noqa: E402,F401
from . import rmc21 as _rmc21  # noqa: E402,F401
from . import rmc21_lowrank as _rmc21_lowrank  # noqa: E402,F401
from . import gd as _gd  # noqa: E402,F401
from . import conjectures as _conjectures  # noqa: E402,F401
from . import experiments_rc20 as _experiments_rc20  # noqa: E402,F401
from . import experiments_rc20_gd as _experiments_rc20_gd  # noqa: E402,F401
from . import experiments_rc20_tc as _experiments_rc20_tc  # noqa: E402,F401
from . import experiments_rmc21 as _experiments_rmc21  # noqa: E402,F401
from . import experiments_rmc21_thm2 as _experiments_rmc21_thm2  # noqa: E402,F401
from . import experiments_achl19 as _experiments_achl19  # noqa: E402,F401
from . import experiments_achl19_dynamics as _experiments_achl19_dynamics  # noqa: E402,F401

__all__ = ["CLAIMS", "Claim", "Expectation", "Hyp", "Kind", "Outcome", "claim", "combine", "error_unknown", "escalate",
           "identity_outcome", "measures", "point_outcome", "rc20_setting", "register", "stats", "strategies"]
