"""The engine contract owned by models.engines.base (issue 10): one entry point for one init or a batch, the
budget and the stop rule, one stats schema, the declared options, the companion-run estimate, and that a run
never changes the caller's Init. Comparisons between two runs of the same input are exact (bit-identical):
both go through the same arithmetic, so any difference is a contract bug, not rounding."""

from __future__ import annotations

import inspect
import math

import numpy as np
import pytest

from models import inits
from models.engines import ENGINES, engine_class, get_engine
from models.engines.base import SAFETY, STATS_KEYS, Batch, loss_levels, running_error
from models.errors import InvalidInput
from models.factorizations import CP, DeepMatrix
from models.generators import random_completion
from models.problems import random_tensor_completion, rc20
from models.trajectory import Status

MODEL = DeepMatrix(2, (2, 2))


def _same_points(a, b):
    assert len(a.points) == len(b.points)
    for p, q in zip(a.points, b.points):
        assert (p.t, p.step, p.loss, p.det_sign, p.loss_err, p.product_err) == \
               (q.t, q.step, q.loss, q.det_sign, q.loss_err, q.product_err)
        assert np.array_equal(p.product, q.product)


def test_a_batch_member_is_the_run_of_that_member_alone():
    # gd batches natively: member b of a batch of 3 is bit-identical to a run of member b alone, and a batch of
    # one is the same record type as a batch of three
    eng = get_engine("gd", lr=0.05, device="cpu", record_every=10)
    members = [inits.gaussian(MODEL, 0.4, seed=s) for s in range(3)]
    batch = eng.run(rc20(), MODEL, members, steps=60)
    assert isinstance(batch, Batch) and len(batch) == 3
    one = eng.run(rc20(), MODEL, members[1:2], steps=60)
    assert isinstance(one, Batch) and len(one) == 1
    for b, init in enumerate(members):
        alone = eng.run(rc20(), MODEL, init, steps=60)
        _same_points(batch[b], alone)
        assert np.array_equal(batch.final_factors[0][b], alone.final.factors[0])
    _same_points(one[0], batch[1])


def _fast_cases():
    """The fast-kernel engines on a problem each runs: (engine, problem, model, members, spec)."""
    deep = DeepMatrix(3, (2, 2))
    cp = CP((4, 4, 4), 6)
    tprob, target = random_tensor_completion((4, 4, 4), 20, rank=1, seed=0, reduction="mean")
    dense = DeepMatrix(3, (5, 4), (6, 3))
    dense_problem, _ = random_completion((5, 4), rank=1, m=12, seed=0, reduction="mean")
    return [
        (get_engine("gd-small", lr=0.05, record_every=20), rc20(), deep,
         [inits.gaussian(deep, 0.3, seed=s) for s in range(3)], {"steps": 200, "until_loss": 1e-3}),
        (get_engine("gd-cp", lr=0.2, check_every=10, norms_every=7), tprob, cp,
         [inits.cp_gaussian(cp, 0.3, seed=s) for s in range(3)],
         {"steps": 300, "until_loss": 1e-4, "options": {"target": target}}),
        # a non-square completion and hidden widths: the dense kernel's general case; GroupRMSprop by gd's name
        (get_engine("gd-dense", lr=0.02, step_rule="normalized", device="cpu", check_every=10, record_every=25,
                    record_svals=2, record_alignment=True), dense_problem, dense,
         [inits.gaussian(dense, 0.4, seed=s) for s in range(3)], {"steps": 150, "until_loss": 1e-3}),
    ]


@pytest.mark.parametrize("case", range(3), ids=["gd-small", "gd-cp", "gd-dense"])
def test_fast_kernel_batch_members_are_lone_runs(case):
    # the compiled / bmm kernels through the contract: member b of a batch is bit-identical to member b alone
    # (errors included), the kernel's own record rides along in kernel_run, and the stats have the one schema
    eng, problem, model, members, spec = _fast_cases()[case]
    batch = eng.run(problem, model, members, **spec)
    assert isinstance(batch, Batch) and len(batch) == 3 and batch.kernel_run is not None
    assert len(batch.kernel_run.status) == 3
    for b, init in enumerate(members):
        alone = eng.run(problem, model, init, **spec)
        _same_points(batch[b], alone)
        assert batch.final_loss[b] == alone.final.loss and np.array_equal(batch.final_factors[0][b],
                                                                          alone.final.factors[0])
        assert all(k in alone.stats for k in STATS_KEYS) and alone.stats["steps"] == alone.final.step
        assert alone.points[0].step == 0 and all(p.product_err > 0 for p in alone.points)
        # the kernel's record and the trajectory agree on the member's last iterate
        assert alone.final.loss == batch.kernel_run.final_loss[b]
    if eng.name == "gd-cp":
        assert batch.kernel_run.component_norms.shape[1:] == (3, model.rank)
    if eng.name == "gd-dense":
        run = batch.kernel_run
        assert run.svals.shape[1:] == (3, 2) and run.diag_mean.shape == run.loss.shape == run.scale.shape
        for b in range(3):
            # every record up to the member's stop is a point (record_products), at the kernel's recorded loss
            fk = int(run.final_step[b])
            kept = [(int(k), float(run.loss[r, b])) for r, k in enumerate(run.steps) if k < fk]
            assert [(p.step, p.loss) for p in batch[b].points[:-1]] == kept
            # the product is the problem's: its loss recomputed in numpy agrees within the point's estimate
            for p in batch[b].points:
                assert abs(float(problem.loss(p.product)) - p.loss) <= p.loss_err


def test_fast_kernels_refuse_what_they_do_not_declare():
    eng, problem, model, members, spec = _fast_cases()[0]
    with pytest.raises(InvalidInput, match="needs steps"):
        eng.run(problem, model, members[0], until_loss=1e-3)
    with pytest.raises(InvalidInput, match="record_at"):
        eng.run(problem, model, members[0], steps=5, record_at=(1, 2))
    with pytest.raises(InvalidInput, match="square"):
        eng.run(problem, DeepMatrix(2, (2, 2), (3,)), inits.gaussian(DeepMatrix(2, (2, 2), (3,)), 0.3), steps=5)
    cp_eng, tprob, cp, cp_members, _ = _fast_cases()[1]
    with pytest.raises(InvalidInput, match="run options"):
        cp_eng.run(tprob, cp, cp_members[0], steps=5, options={"record_every": 2})
    with pytest.raises(InvalidInput, match="record_every"):
        cp_eng.run(tprob, cp, cp_members[0], steps=5, record_every=2)


def test_gd_dense_refuses_what_it_does_not_declare():
    eng, problem, model, members, spec = _fast_cases()[2]
    with pytest.raises(InvalidInput, match="needs steps"):
        eng.run(problem, model, members[0], until_loss=1e-3)
    with pytest.raises(InvalidInput, match="record_at"):
        eng.run(problem, model, members[0], steps=5, record_at=(1, 2))
    with pytest.raises(InvalidInput, match="t_max"):
        eng.run(problem, model, members[0], steps=5, t_max=1.0)
    with pytest.raises(InvalidInput, match="run options"):
        eng.run(problem, model, members[0], steps=5, options={"target": 1})
    cp = CP((4, 4, 4), 2)
    tprob, _ = random_tensor_completion((4, 4, 4), 20, rank=1, seed=0, reduction="mean")
    with pytest.raises(InvalidInput):
        eng.run(tprob, cp, inits.cp_gaussian(cp, 0.3, seed=0), steps=5)
    for bad in ({"step_rule": "adam"}, {"rms_alpha": 1.0}, {"device": "tpu"}, {"record_alignment": True},
                {"record_every": 0}, {"dtype": "float16"}, {"lr": -1.0}):
        with pytest.raises(InvalidInput):
            get_engine("gd-dense", **{"device": "cpu", **bad})


def test_engines_without_native_batching_run_members_one_by_one():
    eng = get_engine("gf", rtol=1e-8)
    members = [inits.balanced(MODEL, 0.1, seed=s) for s in (0, 1)]
    batch = eng.run(rc20(), MODEL, members, until_loss=1e-3)
    assert isinstance(batch, Batch) and len(batch) == 2 and list(batch.status) == ["completed"] * 2
    for b, init in enumerate(members):
        alone = eng.run(rc20(), MODEL, init, until_loss=1e-3)
        _same_points(batch[b], alone)
        assert batch.final_loss[b] == alone.final.loss


def test_batch_input_is_checked():
    eng = get_engine("gd", lr=0.05, device="cpu")
    with pytest.raises(InvalidInput, match="non-finite"):
        eng.run(rc20(), MODEL, [np.full((1, 2, 2), np.nan), np.ones((1, 2, 2))], steps=1)
    with pytest.raises(InvalidInput, match="shape"):
        eng.run(rc20(), MODEL, [np.ones((2, 2, 2)), np.ones((2, 2, 1))], steps=1)


def test_run_does_not_change_the_callers_init():
    listed = [[[0.3, 0.1], [0.0, 0.2]], [[0.2, 0.0], [0.1, 0.3]]]   # lists: the spec converts them
    init = inits.Init(tuple(listed), "explicit")
    get_engine("gd", lr=0.05, device="cpu").run(rc20(), MODEL, init, steps=3)
    assert init.factors[0] is listed[0] and init.factors[1] is listed[1]


@pytest.mark.parametrize("name, options, spec", [
    ("gf", {}, {"until_loss": 1e-3}),
    ("gf-mp", {"digits": 20}, {"until_loss": 1e-3}),       # depth 1 below: the closed form, fast
    ("gd", {"lr": 0.05, "device": "cpu"}, {"steps": 20}),
    ("gd-dense", {"lr": 0.05, "device": "cpu"}, {"steps": 20}),
])
def test_one_stats_schema(name, options, spec):
    model = DeepMatrix(1, (2, 2)) if name == "gf-mp" else MODEL
    tr = get_engine(name, **options).run(rc20(), model, inits.identity(model, 0.5), **spec)
    assert all(k in tr.stats for k in STATS_KEYS)
    assert "main" not in tr.stats and "reference" not in tr.stats
    if "error_run" in tr.stats:
        assert all(k in tr.stats["error_run"] for k in STATS_KEYS)


def test_gf_mp_stats_are_at_top_level():
    tr = get_engine("gf-mp", digits=20).run(rc20(), MODEL, inits.balanced(MODEL, 0.3, seed=1), until_loss=1e-2)
    assert tr.status is Status.COMPLETED and tr.stats["path"] == "chart" and tr.stats["steps"] > 0
    assert tr.stats["error_run"]["steps"] > 0 and tr.stats["error_run"]["status"] == "completed"


@pytest.mark.parametrize("name", sorted(ENGINES))
def test_declared_options_are_the_constructor_keywords(name):
    cls = engine_class(name)
    params = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    assert sorted(cls.options) == sorted(params)
    assert set(cls.stops_by) <= {"until_loss", "t_max", "steps"} and cls.clock in ("time", "step")
    assert set(cls.models) <= {"deep", "cp"}


def test_max_steps_is_a_budget():
    tr = get_engine("gf", max_steps=5).run(rc20(), MODEL, inits.balanced(MODEL, 0.1, seed=0), until_loss=1e-10)
    assert tr.status is Status.BUDGET and "max_steps=5" in tr.message


def test_record_every_is_refused_by_engines_that_do_not_count_steps():
    with pytest.raises(InvalidInput, match="record_every"):
        get_engine("gf").run(rc20(), MODEL, inits.balanced(MODEL, 0.1), until_loss=1e-3, record_every=5)


def test_companion_pair_is_the_engines_own_pair():
    # run_pair gives the main run without an estimate of its own (the same integration as the engine's main
    # run: bit-identical states, infinite errors) and the companion the engine uses (rtol 10x looser, loose=0)
    eng = get_engine("gf", rtol=1e-9, path="raw")
    init = inits.gaussian(MODEL, 0.4, seed=3)
    times = (0.5, 1.0, 2.0)
    main, comp = eng.run_pair(rc20(), MODEL, init, record_at=times)
    full = eng.run(rc20(), MODEL, init, record_at=times)
    assert math.isinf(main.error_estimate) and all(math.isinf(p.product_err) for p in main.points)
    assert comp.settings["rtol"] == pytest.approx(1e-8) and comp.settings["loose"] == 0
    assert [p.t for p in main.points] == [p.t for p in full.points]
    assert all(np.array_equal(p.product, q.product) and p.loss == q.loss for p, q in zip(main.points, full.points))
    assert running_error([1.0, 1.0, 1.0], [1.0, 1.5, 1.25]).tolist() == [0.0, SAFETY * 0.5, SAFETY * 0.5]


def test_loss_levels():
    assert loss_levels(1.0, 1, 1e-3) == [0.1, 0.01]
    lv = loss_levels(0.5, 4, None)
    assert lv[0] == 10 ** (-2 / 4) and lv[-1] > 0 and all(a > b for a, b in zip(lv, lv[1:]))


def test_by_name_dispatches_to_the_named_init():
    cp = CP((3, 3, 3), 2)
    pairs = [
        (inits.by_name(MODEL, "balanced", 0.2, seed=4, det="negative"), inits.balanced(MODEL, 0.2, seed=4, det="negative")),
        (inits.by_name(MODEL, "gaussian", 0.2, seed=4), inits.gaussian(MODEL, 0.2, seed=4)),
        (inits.by_name(MODEL, "identity", 0.5), inits.identity(MODEL, 0.5)),
        (inits.by_name(cp, "balanced", 0.2, seed=4), inits.cp_balanced(cp, 0.2, seed=4)),
        (inits.by_name(cp, "gaussian", 0.2, seed=4), inits.cp_gaussian(cp, 0.2, seed=4)),
    ]
    for a, b in pairs:
        assert a.kind == b.kind and all(np.array_equal(x, y) for x, y in zip(a.factors, b.factors))
    for bad in [(MODEL, "orthogonal"), (cp, "identity")]:
        with pytest.raises(InvalidInput, match="unknown init"):
            inits.by_name(*bad, 0.1)
    with pytest.raises(InvalidInput, match="det"):
        inits.by_name(MODEL, "identity", 0.5, det="negative")


def test_tensor_problem_names_its_observed_entries():
    problem, _ = random_tensor_completion((3, 3, 3), 5, rank=1, seed=0)
    T = np.arange(27.0).reshape(3, 3, 3)
    assert np.array_equal(problem.residuals(T), T.reshape(-1)[problem.obs_flat] - problem.targets)
