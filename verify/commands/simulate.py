"""``verify simulate``: run one trajectory of one engine and write it as JSON.

Examples::

    verify simulate --depth 3 --until-loss 1e-12 --json -
    verify simulate --engine gf-mp --depth 4 --until-loss 1e-30 --json traj.json
    verify simulate --engine gd --lr 0.05 --steps 20000 --init gaussian --scale 0.1 --json -
    verify simulate --z 1 --z-prime -2 --eps 0.01 --det negative --json -
    verify simulate --problem random_completion:shape=10x10,rank=1,m=60,seed=0 --depth 3 --scale 0.01 --json -
    verify simulate --problem my_problem.json --depth 1 --init gaussian --scale 1e-3 --json -
    verify simulate --problem random_tensor:dims=4x4x4,rank=1,m=32 --model cp --rank 5 --init gaussian --json -
    verify simulate --problem rc20_larger:shape=5x10 --save-problem rc20_5x10.json --json -
    verify simulate --engine gd --steps 20000 --record-every 50 --json -       # checkpoints every 50 steps
    verify simulate --record-at 1,10,100 --t-max 100 --json -                  # gf / gf-mp states at given times

Problems (--problem): a built-in generator NAME[:key=value,...] or a problem file (.json, or .npz for large
ones; the JSON forms, 0-based, "reduction" optional):

    {"kind": "completion", "shape": [d, dp], "observed": [[i, j], ...], "values": [...]}
    {"kind": "sensing", "measurements": [A_1, ...], "targets": [...]}
    {"kind": "tensor_completion", "dims": [d_1, ...], "indices": [[i_1, ..., i_N], ...], "values": [...]}

Built-in generators and their defaults (tuples written 5x10; rc20's unobserved entry as row x column, 0-based)
are listed at the end of ``verify simulate --help``.

The JSON holds ``engine``, ``settings`` (problem, model, init, engine options, stopping rule), ``points`` (a
list of ``{t or step, loss, product, det_sign, loss_err, product_err}``; ``hp`` with decimal strings for gf-mp),
``final`` (the last point), ``error_estimate`` (largest relative error of the recorded end-to-end entries;
"inf" when a failed run could not estimate it), ``status`` (completed, inaccurate: the error estimate does not
resolve the points, budget, diverged, precision_lost, solver_failed), ``message`` (for a failure or an
inaccurate run, what would go on: gf-mp, a smaller --rtol, more --digits, a smaller --lr),
``det_sign_change`` (null, or where the det sign first changed between recorded points: gradient descent with a
finite step can flip it; a warning is printed too), ``stats`` and ``seconds``. For gf and gf-mp on a deep matrix
factorization with at most 16 end-to-end entries, each point also has ``flow_defect`` and ``flow_defect_err``
(the engine's tangent dW/dt against the gradient-flow field computed independently from the raw factors'
gradient, relative) and the document a ``flow_defect`` summary (max, its error, tolerance 1e-2,
exceeds_tolerance); otherwise ``flow_defect`` says why there is none (verify/flow_defect.py). Non-finite numbers are written as
the strings "nan", "inf", "-inf" (strict JSON). --json is checked writable before the run starts.

Exit status 0 when the run completed, 1 when it did not (inaccurate, or the engine stopped early: the record
says why), 2 for bad input (including an init that overflows float64 or is a stationary point of the loss),
3 for an internal error.
"""

from __future__ import annotations

import argparse
import json
import math
import sys

from models import inits
from models.engines import ENGINES, engine_class
from models.errors import InvalidInput, require
from models.factorizations import CP, DeepMatrix
from models.generators import generate, generator_help, parse_problem_spec
from models.problem_files import is_problem_file, load_problem, save_problem
from models.problems import MatrixProblem
from verify import flow_defect, outdir, preflight

HELP = "run one trajectory (gf, gf-mp or gd) on a built-in or given problem and write it as JSON"


def _finite(name: str):
    def parse(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be a number, got {text!r}") from None
        if not math.isfinite(v):
            raise argparse.ArgumentTypeError(f"{name} must be finite, got {text!r}")
        return v
    return parse


def _positive(name: str):
    def parse(text: str) -> float:
        v = _finite(name)(text)
        if v <= 0:
            raise argparse.ArgumentTypeError(f"{name} must be > 0, got {text!r}")
        return v
    return parse


def _int_at_least(name: str, low: int):
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be an integer, got {text!r}") from None
        if v < low:
            raise argparse.ArgumentTypeError(f"{name} must be >= {low}, got {text!r}")
        return v
    return parse


def _int_in(name: str, low: int, high: int):
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be an integer, got {text!r}") from None
        if not low <= v <= high:
            raise argparse.ArgumentTypeError(f"{name} must be between {low} and {high}, got {text!r}")
        return v
    return parse


DIGITS = (20, 300)  # gf-mp's range: its default tolerance 10^-(digits-10) must be a float64 > 0


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = (__doc__.split("\n\n", 1)[1] + "\nBuilt-in problems (--problem NAME:key=value,...), with their "
                "defaults:\n\n" + "\n".join("    " + line for line in generator_help().splitlines()))
    g = p.add_argument_group("problem")
    g.add_argument("--problem", default="rc20", metavar="NAME[:key=value,...]|FILE",
                   help="a built-in problem (rc20, the 2x2 problem [[*, z], [z', eps]] of Razin & Cohen 2020, is the "
                        "default; the others are listed below) or a problem file .json/.npz")
    g.add_argument("--z", type=_finite("--z"), default=None, help="rc20: observed entry (1,2) (default 1)")
    g.add_argument("--z-prime", type=_finite("--z-prime"), default=None,
                   help="rc20: observed entry (2,1) (default 1)")
    g.add_argument("--eps", type=_finite("--eps"), default=None, help="rc20: observed entry (2,2) (default 0)")
    g.add_argument("--save-problem", metavar="FILE", default=None,
                   help="also write the problem as a problem file (.json or .npz)")
    g = p.add_argument_group("model and init")
    g.add_argument("--model", choices=["deep", "cp"], default=None,
                   help="deep (deep matrix factorization, for matrix problems) or cp (CP tensor factorization, for "
                        "tensor problems); default: the one that fits the problem")
    g.add_argument("--depth", type=_int_at_least("--depth", 1), default=None,
                   help="deep: number of factors L, 1 = the plain linear model (default 3)")
    g.add_argument("--rank", type=_int_at_least("--rank", 1), default=None,
                   help="cp: number of components R (required for cp)")
    g.add_argument("--init", default="balanced", metavar="balanced|identity|gaussian|FILE.json",
                   help="balanced (deep: from a Gaussian end-to-end matrix; cp: equal factor norms per component), "
                        "identity (deep: scale * I end to end), gaussian (per-layer or per-factor, unbalanced), or a "
                        "JSON file with the factors W_1..W_L, first layer first (default balanced)")
    g.add_argument("--scale", type=_positive("--scale"), default=None,
                   help="init scale: entry std of the end-to-end matrix (balanced), alpha (identity), per-layer std "
                        "(gaussian) (default 0.1; not for FILE)")
    g.add_argument("--det", choices=["positive", "negative", "any"], default=None,
                   help="det sign of the initial end-to-end matrix (balanced, gaussian; default positive; not for "
                        "identity, whose det is scale^2 > 0, or FILE)")
    g.add_argument("--seed", type=_int_at_least("--seed", 0), default=0, help="init seed (default 0)")
    g = p.add_argument_group("engine")
    g.add_argument("--engine", default="gf", metavar="|".join(ENGINES),
                   help="gf (float64 gradient flow), gf-mp (mpmath gradient flow), gd (torch gradient descent), "
                        "gd-small (compiled GD, square deep models, needs --steps), gd-cp (batched GD on CP tensor "
                        "completion, needs --steps), gd-dense (batched torch GD on dense deep models, needs --steps); "
                        "default gf")
    g.add_argument("--rtol", type=_positive("--rtol"), default=None, help="gf: BDF relative tolerance (default 1e-10)")
    g.add_argument("--digits", type=_int_in("--digits", DIGITS[0], DIGITS[1]), default=None,
                   help=f"gf-mp: decimal digits, {DIGITS[0]}..{DIGITS[1]} (default 40; the time grows steeply with "
                        f"the digits)")
    g.add_argument("--lr", type=_positive("--lr"), default=None, help="gd: step size (default 1e-2)")
    g.add_argument("--step-rule", choices=["constant", "normalized"], default=None,
                   help="gd, gd-cp, gd-dense: constant (default) or normalized: one global step lr / (RMS of the "
                        "gradient norm + 1e-6) per iteration, the official trainers' GroupRMSprop (gd: deep models only)")
    g.add_argument("--steps", type=_int_at_least("--steps", 0), default=None,
                   help="gd: number of steps (default: until --until-loss)")
    g.add_argument("--device", default=None,
                   help="gd, gd-dense: torch device, cpu or cuda (default: cuda when torch sees one)")
    g = p.add_argument_group("stopping and output")
    g.add_argument("--until-loss", type=_positive("--until-loss"), default=None,
                   help="stop when the loss reaches this value (default 1e-12 for gf, 1e-30 for gf-mp: 35-70 s "
                        "at depths 2-3 with its error estimate at 40 digits, verify bench --only gf-mp)")
    g.add_argument("--t-max", type=_positive("--t-max"), default=None, help="gf, gf-mp: stop at this time")
    g.add_argument("--per-decade", type=_int_at_least("--per-decade", 1), default=4,
                   help="record this many points per decade of loss (default 4)")
    g.add_argument("--record-every", type=_int_at_least("--record-every", 1), default=None, metavar="K",
                   help="gd: record every K steps (besides the start and the end) instead of at loss decades")
    g.add_argument("--record-at", type=_times, default=None, metavar="T1,T2,...",
                   help="gf, gf-mp: also record at these times, besides loss decades; the run then ends at the "
                        "last of them at the latest (gd: at these step numbers)")
    g.add_argument("--wall-budget", type=_positive("--wall-budget"), default=300.0,
                   help="wall-clock budget in seconds; the run stops with status budget (default 300)")
    g.add_argument("--factors", action="store_true",
                   help="include the factors of every point (engines that integrate the end-to-end matrix on its "
                        "chart, gf and gf-mp from balanced inits, have none: a warning says so)")
    g.add_argument("--json", metavar="PATH", default="-", help="where to write the trajectory JSON; - is stdout "
                                                               "(default)")


def _times(text: str) -> tuple[float, ...]:
    out = []
    for part in text.split(","):
        v = _finite("--record-at")(part.strip())
        if v < 0:
            raise argparse.ArgumentTypeError(f"--record-at times must be >= 0, got {part.strip()!r}")
        out.append(v)
    return tuple(out)


def _problem(args):
    """The problem named by ``--problem`` (a generator with parameters, or a file) and the rc20 flags."""
    text = args.problem
    flags = {k: getattr(args, k) for k in ("z", "z_prime", "eps") if getattr(args, k) is not None}
    name, params = (None, {}) if is_problem_file(text) else parse_problem_spec(text)
    if flags and name != "rc20":
        raise InvalidInput(f"--{next(iter(flags)).replace('_', '-')} applies to --problem rc20 only")
    if name is None:
        return load_problem(text)
    for k, v in flags.items():
        require(k not in params, f"rc20 parameter {k} is given both in --problem and as a flag")
        params[k] = v
    return generate(name, **params)


def _model(args, problem):
    kind = args.model or ("deep" if isinstance(problem, MatrixProblem) else "cp")
    if kind == "deep":
        require(isinstance(problem, MatrixProblem),
                f"--model deep needs a matrix problem; {problem.name} is a tensor problem (use --model cp --rank R)")
        require(args.rank is None, "--rank applies to --model cp; a deep factorization takes --depth")
        return DeepMatrix(3 if args.depth is None else args.depth, problem.shape)
    require(not isinstance(problem, MatrixProblem),
            f"--model cp needs a tensor problem; {problem.name} is a matrix problem (use --model deep)")
    require(args.depth is None, "--depth applies to --model deep; a CP factorization takes --rank")
    require(args.rank is not None, "--model cp needs --rank R (the number of components)")
    return CP(problem.dims, args.rank)


#: the engine flags of this command, each the engine option of the same name (an engine takes the flags whose
#: names it declares in ``options``)
ENGINE_FLAGS = ("rtol", "digits", "lr", "device", "step_rule")
#: the stopping and recording flags, each the Spec field of the same name (declared in ``stops_by`` /
#: ``records_by``)
STOP_FLAGS = ("steps", "t_max")
RECORD_FLAGS = ("record_every",)


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _takers(field: str, attr: str) -> str:
    """The engines that declare ``field`` in their ``attr`` (only on an error path: it imports every engine)."""
    names = [n for n in ENGINES if field in getattr(engine_class(n), attr)]
    return " and ".join(names) if len(names) <= 2 else ", ".join(names)


def _engine(args):
    name = args.engine
    require(name in ENGINES, f"unknown engine {name!r}; choose one of {', '.join(ENGINES)}")
    cls = engine_class(name)
    stray = [opt for opt in ENGINE_FLAGS if getattr(args, opt) is not None and opt not in cls.options]
    require(not stray, f"{_flag(stray[0])} does not apply to engine {name}" if stray else "")
    for field in STOP_FLAGS:
        if getattr(args, field) is not None and field not in cls.stops_by:
            raise InvalidInput(f"{_flag(field)} applies to {_takers(field, 'stops_by')}; {name} stops at "
                               + " or ".join(_flag(f) for f in cls.stops_by))
    for field in RECORD_FLAGS:
        if getattr(args, field) is not None and field not in cls.records_by:
            raise InvalidInput(f"{_flag(field)} applies to {_takers(field, 'records_by')}; {name} takes "
                               + ("--record-at T1,T2,..." if "record_at" in cls.records_by else "neither"))
    options = {opt: getattr(args, opt) for opt in ENGINE_FLAGS if opt in cls.options and getattr(args, opt) is not None}
    return cls(**options)


def _init(args, model):
    """The init named by ``--init`` (:func:`models.inits.by_name`), after the checks of which flags apply."""
    kind = args.init
    scale = 0.1 if args.scale is None else args.scale
    if kind.endswith(".json"):
        stray = [opt for opt in ("scale", "det") if getattr(args, opt) is not None]
        require(not stray, f"--{stray[0]} does not apply to --init {kind} (the file gives the factors)" if stray else "")
        return inits.by_name(model, kind)
    if isinstance(model, CP):
        require(args.det is None, f"--det {args.det} does not apply to a cp model (it has no det)")
        require(kind in inits.NAMES["cp"],
                f"--init for a cp model must be balanced, gaussian or a .json file, got {kind!r}")
        return inits.by_name(model, kind, scale, seed=args.seed)
    require(kind in inits.NAMES["deep"],
            f"--init must be balanced, identity, gaussian or a .json file, got {kind!r}")
    if kind == "identity":
        require(args.det is None, f"--det {args.det} does not apply to --init identity (its det is scale^2 > 0); "
                                  f"use --init balanced or gaussian")
        return inits.by_name(model, kind, scale)
    det = "positive" if args.det is None else args.det
    require(kind != "balanced" or det != "any", "--det any needs --init gaussian (balanced inits choose a det sign)")
    return inits.by_name(model, kind, scale, seed=args.seed, det=det)


def simulate(args, setting: dict | None = None):
    """The trajectory described by parsed ``args`` (raises InvalidInput on bad input); ``setting``, when given,
    receives the ``problem`` and ``model`` run."""
    engine = _engine(args)
    problem = _problem(args)
    model = _model(args, problem)
    kind = "cp" if isinstance(model, CP) else "deep"
    require(kind in engine.models,
            f"engine {engine.name} runs {' and '.join(KIND_WORDS[k] for k in engine.models)} only; engines "
            f"{_takers(kind, 'models')} run a {kind} model")
    init = _init(args, model)
    if setting is not None:
        setting.update(problem=problem, model=model)
    preflight.check_start(problem, model, init, what=f"--init {args.init}")
    if args.save_problem is not None:
        save_problem(problem, args.save_problem)
    spec = {"per_decade": args.per_decade, "wall_budget": args.wall_budget}
    stops = {f: getattr(args, f) for f in ("until_loss",) + STOP_FLAGS if f in engine.stops_by}
    if all(v is None for v in stops.values()):
        require(engine.default_until_loss is not None,
                f"{engine.name} needs " + " or ".join(_flag(f) for f in engine.stops_by))
        stops["until_loss"] = engine.default_until_loss
    if args.record_at is not None:
        spec["record_at"] = args.record_at
        if engine.clock == "step":
            require(all(float(t).is_integer() for t in args.record_at),
                    f"{engine.name} --record-at takes step numbers")
        else:  # a flow ends at the last record_at time
            require(max(args.record_at) > 0, f"--record-at needs a time > 0 for {engine.name}")
            t_max = stops.get("t_max")
            stops["t_max"] = min(max(args.record_at), t_max if t_max is not None else math.inf)
    if args.record_every is not None:
        spec["record_every"] = args.record_every
    spec.update(stops)
    return engine.run(problem, model, init, **spec)


KIND_WORDS = {"deep": "deep matrix factorizations", "cp": "CP factorizations"}


def run(args) -> int:
    outdir.writable_file(args.json, "--json")
    if args.save_problem is not None:
        outdir.writable_file(args.save_problem, "--save-problem")
    setting: dict = {}
    traj = simulate(args, setting)
    doc = flow_defect.annotate(traj.to_json(with_factors=args.factors), traj, setting["problem"], setting["model"])
    text = json.dumps(doc, allow_nan=False, indent=1)
    if args.json == "-":
        sys.stdout.write(text + "\n")
    else:
        path = outdir.write_text(args.json, text + "\n", "--json")
        f = traj.final
        print(f"{traj.engine}: {traj.status.value}, loss {f.loss:.3g}, det sign {f.det_sign}, "
              f"{len(traj.points)} points, {traj.seconds:.2f} s -> {path}", file=sys.stderr)
    if args.factors and any(p.factors is None for p in traj.points):
        print(f"warning: --factors: {traj.engine} integrated the end-to-end matrix on its chart here, so the points "
              f"have no factors (the factors are not tracked); use gd, or an unbalanced init, to get them",
              file=sys.stderr)
    for line in preflight.run_warnings(traj):
        print(line, file=sys.stderr)
    return 0 if traj.status.value == "completed" else 1
