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
``final`` (the last point), ``error_estimate`` (largest relative error of the recorded end-to-end entries),
``status`` (completed, budget, diverged, precision_lost, solver_failed), ``message``, ``stats`` and ``seconds``.
Non-finite numbers are written as the strings "nan", "inf", "-inf" (strict JSON). Exit status 0 when the run
completed, 1 when the engine stopped early (the record says why), 2 for bad input.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from models import inits
from models.engines import ENGINES, get_engine
from models.errors import InvalidInput, require
from models.factorizations import DeepMatrix
from models.factorizations import CP
from models.generators import generate, generator_help, parse_problem_spec
from models.problem_files import is_problem_file, load_problem, save_problem
from models.problems import MatrixProblem

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
    g.add_argument("--scale", type=_positive("--scale"), default=0.1,
                   help="init scale: entry std of the end-to-end matrix (balanced), alpha (identity), per-layer std "
                        "(gaussian) (default 0.1)")
    g.add_argument("--det", choices=["positive", "negative", "any"], default="positive",
                   help="det sign of the initial end-to-end matrix (balanced, gaussian; default positive)")
    g.add_argument("--seed", type=_int_at_least("--seed", 0), default=0, help="init seed (default 0)")
    g = p.add_argument_group("engine")
    g.add_argument("--engine", default="gf", metavar="|".join(ENGINES),
                   help="gf (float64 gradient flow), gf-mp (mpmath gradient flow), gd (torch gradient descent); "
                        "default gf")
    g.add_argument("--rtol", type=_positive("--rtol"), default=None, help="gf: BDF relative tolerance (default 1e-10)")
    g.add_argument("--digits", type=_int_at_least("--digits", 1), default=None, help="gf-mp: decimal digits (default 40)")
    g.add_argument("--lr", type=_positive("--lr"), default=None, help="gd: step size (default 1e-2)")
    g.add_argument("--steps", type=_int_at_least("--steps", 0), default=None,
                   help="gd: number of steps (default: until --until-loss)")
    g.add_argument("--device", default=None, help="gd: torch device, cpu or cuda (default: cuda when torch sees one)")
    g = p.add_argument_group("stopping and output")
    g.add_argument("--until-loss", type=_positive("--until-loss"), default=None,
                   help="stop when the loss reaches this value (default 1e-12 for gf, 1e-30 for gf-mp: ~15-45 s)")
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
    g.add_argument("--factors", action="store_true", help="include the factors of every point")
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


def _engine(args):
    name = args.engine
    require(name in ENGINES, f"unknown engine {name!r}; choose one of {', '.join(ENGINES)}")
    chosen = {"gf": ("rtol",), "gf-mp": ("digits",), "gd": ("lr", "device")}[name]
    stray = [opt for opt in ("rtol", "digits", "lr", "device") if getattr(args, opt) is not None and opt not in chosen]
    require(not stray, f"--{stray[0].replace('_', '-')} does not apply to engine {name}" if stray else "")
    if name == "gd":
        require(args.t_max is None, "--t-max applies to gf and gf-mp; gd counts --steps")
    else:
        require(args.steps is None, f"--steps applies to gd; {name} stops at --until-loss or --t-max")
        require(args.record_every is None, f"--record-every applies to gd; {name} takes --record-at T1,T2,...")
    options = {opt: getattr(args, opt) for opt in chosen if getattr(args, opt) is not None}
    return get_engine(name, **options)


def _init(args, model):
    kind = args.init
    if isinstance(model, CP):
        if kind == "balanced":
            return inits.cp_balanced(model, args.scale, seed=args.seed)
        if kind == "gaussian":
            return inits.cp_gaussian(model, args.scale, seed=args.seed)
        require(kind.endswith(".json"), f"--init for a cp model must be balanced, gaussian or a .json file, got {kind!r}")
        return inits.from_json(model, kind)
    if kind == "balanced":
        require(args.det != "any", "--det any needs --init gaussian (balanced inits choose a det sign)")
        return inits.balanced(model, args.scale, seed=args.seed, det=args.det)
    if kind == "identity":
        return inits.identity(model, args.scale)
    if kind == "gaussian":
        return inits.gaussian(model, args.scale, seed=args.seed, det=args.det)
    require(kind.endswith(".json"), f"--init must be balanced, identity, gaussian or a .json file, got {kind!r}")
    return inits.from_json(model, kind)


def simulate(args):
    """The trajectory described by parsed ``args`` (raises InvalidInput on bad input)."""
    engine = _engine(args)
    problem = _problem(args)
    model = _model(args, problem)
    require(not (args.engine == "gf-mp" and isinstance(model, CP)),
            "engine gf-mp integrates deep matrix factorizations only; engines gf and gd run a cp model")
    init = _init(args, model)
    if args.save_problem is not None:
        save_problem(problem, args.save_problem)
    until = args.until_loss
    spec = {"per_decade": args.per_decade, "wall_budget": args.wall_budget}
    if args.record_at is not None:
        spec["record_at"] = args.record_at
    if args.engine == "gd":
        require(args.steps is not None or until is not None, "gd needs --steps or --until-loss")
        if args.record_at is not None:
            require(all(float(t).is_integer() for t in args.record_at), "gd --record-at takes step numbers")
        spec.update(steps=args.steps, until_loss=until)
        if args.record_every is not None:
            spec["options"] = {"record_every": args.record_every}
    else:
        if until is None and args.t_max is None:
            until = 1e-12 if args.engine == "gf" else 1e-30
        t_max = args.t_max
        if args.record_at is not None:  # gf ends at the last record_at time; gf-mp is told to do the same
            t_max = min(max(args.record_at), t_max if t_max is not None else math.inf)
        spec.update(until_loss=until, t_max=t_max)
    return engine.run(problem, model, init, **spec)


def run(args) -> int:
    traj = simulate(args)
    text = json.dumps(traj.to_json(with_factors=args.factors), allow_nan=False, indent=1)
    if args.json == "-":
        sys.stdout.write(text + "\n")
    else:
        path = Path(args.json)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_text(text + "\n")
            tmp.replace(path)
        except OSError as exc:
            raise InvalidInput(f"cannot write {str(path)!r}: {exc.strerror or exc}") from None
        f = traj.final
        print(f"{traj.engine}: {traj.status.value}, loss {f.loss:.3g}, det sign {f.det_sign}, "
              f"{len(traj.points)} points, {traj.seconds:.2f} s -> {path}", file=sys.stderr)
    return 0 if traj.status.value == "completed" else 1
