"""engine.fit: bit-for-bit resume, schedules, callbacks, the all_reduce hook, refusal of foreign checkpoints;
runner.Stages; derive_seed."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from adaptlab.engine import constant, cosine, derive_seed, fit, make_optimizer, step_halving
from adaptlab.errors import RunDirError
from adaptlab.io import Checkpoint
from adaptlab.runner import Stages

from conftest import assert_close


class Stop(Exception):
    pass


class StopAfter(Checkpoint):
    """A real checkpoint file that stops the run (as a kill would) right after its n-th save."""

    def __init__(self, out_dir, n: int, every: int = 10):
        super().__init__(out_dir, every=every)
        self.n, self.saved_steps = n, []

    def save(self, state):
        super().save(state)
        self.saved_steps.append(state["step"])
        if len(self.saved_steps) == self.n:
            raise Stop


def _problem(seed: int = 0):
    """A net with batch-norm buffers and dropout (global RNG), Adam, a cosine schedule, a batch generator."""
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(3, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 1))
    g = torch.Generator().manual_seed(seed + 1)
    w = torch.tensor([[1.0], [-2.0], [0.5]])

    def batches(step):
        x = torch.randn(8, 3, generator=g)
        return x, x @ w + 0.1 * torch.randn(8, 1, generator=g)

    def step_fn(b):
        return ((net(b[0]) - b[1]) ** 2).mean()

    opt = make_optimizer(net.parameters(), "adam", 1e-2)
    gens = {"batches": g, "global": torch.default_generator}
    return net, opt, gens, batches, step_fn


def _run(tmp_path, steps=30, checkpoint=None, resume=True, callbacks=(), with_generators=True):
    net, opt, gens, batches, step_fn = _problem()
    hist = fit(step_fn, batches, steps=steps, optimizer=opt, schedule=cosine(1e-2, steps),
               generator=gens if with_generators else None, modules={"model": net}, checkpoint=checkpoint,
               resume=resume, callbacks=callbacks)
    return net, hist


def _equal_state(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_interrupted_and_resumed_fit_equals_the_uninterrupted_run_bit_for_bit(tmp_path):
    full, full_hist = _run(tmp_path)
    for k in (1, 2):  # stopped after the checkpoint at step 10, and at step 20
        ckpt = StopAfter(tmp_path / f"cut{k}", n=k, every=10)
        ckpt.path.parent.mkdir()
        with pytest.raises(Stop):
            _run(tmp_path, checkpoint=ckpt)
        assert ckpt.saved_steps == [10, 20][:k]
        resumed, hist = _run(tmp_path, checkpoint=Checkpoint(ckpt.path.parent, every=10))
        assert _equal_state(resumed, full)  # parameters and batch-norm statistics
        assert hist["loss"] == full_hist["loss"] and len(hist["loss"]) == 30


def test_resume_without_the_generators_differs(tmp_path):
    """The bit-for-bit test above can fail: leaving the generators out of the checkpoint changes the run."""
    full, _ = _run(tmp_path)
    ckpt = StopAfter(tmp_path, n=1, every=10)
    with pytest.raises(Stop):
        _run(tmp_path, checkpoint=ckpt, with_generators=False)
    resumed, _ = _run(tmp_path, checkpoint=Checkpoint(tmp_path, every=10), with_generators=False)
    assert not _equal_state(resumed, full)


def test_resume_false_starts_over_even_with_a_checkpoint(tmp_path):
    ckpt = StopAfter(tmp_path, n=1, every=10)
    with pytest.raises(Stop):
        _run(tmp_path, checkpoint=ckpt)
    steps = []
    _run(tmp_path, steps=12, checkpoint=Checkpoint(tmp_path, every=10), resume=False,
         callbacks=[lambda s, h: steps.append(s)])
    assert steps == list(range(13))


def test_fit_twice_for_n_steps_equals_once_for_2n():
    """With a constant learning rate the loop has no other state than the objects it is given."""
    def problem():
        torch.manual_seed(0)
        net = nn.Linear(4, 2)
        g = torch.Generator().manual_seed(1)
        opt = make_optimizer(net.parameters(), "sgd", 0.05, momentum=0.9, nesterov=True)
        return net, g, opt

    def go(net, g, opt, steps):
        return fit(lambda x: net(x).pow(2).mean(), lambda _: torch.randn(5, 4, generator=g), steps=steps,
                   optimizer=opt, schedule=constant(0.05))["loss"]

    a = problem()
    la = go(*a, 7) + go(*a, 7)
    b = problem()
    lb = go(*b, 14)
    assert la == lb and _equal_state(a[0], b[0])


def test_callbacks_run_at_step_0_then_after_every_step_and_checkpoints_every_k_but_the_last(tmp_path):
    calls, ckpt = [], StopAfter(tmp_path, n=99, every=3)
    fit(lambda s: None, steps=10, checkpoint=ckpt, callbacks=[lambda step, h: calls.append(step)])
    assert calls == list(range(11)) and ckpt.saved_steps == [3, 6, 9]
    resumed = []
    fit(lambda s: None, steps=10, checkpoint=Checkpoint(tmp_path), callbacks=[lambda step, h: resumed.append(step)])
    assert resumed == [10]  # resumed after step 9: no step-0 call, one more step


def test_the_batch_is_the_step_index_by_default_and_history_survives_resume(tmp_path):
    def step_fn(step):
        hist["seen"].append(step)
        return float(step)

    hist = {"seen": []}
    ckpt = StopAfter(tmp_path, n=1, every=4)
    with pytest.raises(Stop):
        fit(step_fn, steps=9, history=hist, checkpoint=ckpt)
    hist = {"seen": []}  # a new process: the checkpoint restores the history in place
    out = fit(step_fn, steps=9, history=hist, checkpoint=Checkpoint(tmp_path))
    assert out is hist and hist["seen"] == list(range(9)) and hist["loss"] == [float(s) for s in range(9)]


def test_schedules_are_the_closed_forms():
    assert [constant(0.3)(s) for s in (0, 5, 1000)] == [0.3] * 3
    c = cosine(2.0, 10)
    for s in range(11):
        assert_close(c(s), 2.0 * 0.5 * (1 + math.cos(math.pi * s / 10)))
    assert c(0) == 2.0 and abs(c(10)) < 1e-15
    assert [step_halving(1.0, 3)(s) for s in range(10)] == [1, 1, 1, .5, .5, .5, .25, .25, .25, .125]
    assert step_halving(0.7, 0)(10 ** 6) == 0.7
    with pytest.raises(ValueError, match="every=-1"):
        step_halving(1.0, -1)
    w = cosine(2.0, 10, warmup=4)                      # 4 linear steps up to the peak, cosine over the other 6
    assert [w(s) for s in range(4)] == [0.5, 1.0, 1.5, 2.0]
    for s in range(4, 11):
        assert_close(w(s), cosine(2.0, 6)(s - 4))
    assert all(cosine(2.0, 10, warmup=0)(s) == c(s) for s in range(11))
    with pytest.raises(ValueError, match=r"warmup=11; expected 0\.\.steps=10"):
        cosine(1.0, 10, warmup=11)


def test_the_schedule_sets_the_lr_of_each_step_like_a_hand_written_sgd_loop():
    steps, g = 6, torch.Generator().manual_seed(0)
    xs = [torch.randn(3, generator=g) for _ in range(steps)]
    w = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    seen = []
    opt = make_optimizer([w], "sgd", 1.0)
    fit(lambda x: (w - x.double()).pow(2).sum(), lambda s: (seen.append(opt.param_groups[0]["lr"]), xs[s])[1],
        steps=steps, optimizer=opt, schedule=step_halving(0.1, 2))
    ref = torch.zeros(3, dtype=torch.float64)
    for s, x in enumerate(xs):
        ref = ref - 0.1 * 0.5 ** (s // 2) * 2 * (ref - x.double())  # the gradient of |w - x|^2 is 2 (w - x)
    assert seen == [1.0] + [0.1 * 0.5 ** (s // 2) for s in range(steps - 1)]  # read before each step's set
    assert_close(w.detach(), ref)


def test_all_reduce_gets_the_optimizer_params_with_their_gradients_before_the_step():
    torch.manual_seed(0)
    net = nn.Linear(3, 2).double()
    x = torch.randn(4, 3, dtype=torch.float64)
    want = torch.autograd.grad(net(x).pow(2).mean(), list(net.parameters()))
    before = [p.detach().clone() for p in net.parameters()]
    got = []

    def double(params):  # a hook that rewrites the gradients: the step must use what it leaves
        got.append([p.grad.clone() for p in params])
        for p in params:
            p.grad = 2 * p.grad

    fit(lambda b: net(b).pow(2).mean(), lambda _: x, steps=1, optimizer=make_optimizer(net.parameters(), "sgd", 0.1),
        all_reduce=double)
    assert len(got) == 1 and len(got[0]) == 2
    for g, w in zip(got[0], want):
        assert_close(g, w)
    for p, b, w in zip(net.parameters(), before, want):
        assert_close(p.detach(), b - 0.1 * 2 * w)


def test_a_step_fn_may_fill_grad_itself_or_do_the_whole_update():
    def filled():
        w = torch.ones(2, requires_grad=True)

        def step(_):
            w.grad = 2 * w.detach()  # gradient of |w|^2, as a gradient aggregator would set it

        fit(step, steps=3, optimizer=make_optimizer([w], "sgd", 0.1))
        return w.detach()

    def own_update():
        w = torch.ones(2, requires_grad=True)
        opt = make_optimizer([w], "sgd", 0.1)

        def step(_):
            opt.zero_grad()
            loss = w.pow(2).sum()
            loss.backward()
            opt.step()
            return loss

        return w.detach(), fit(step, steps=3)["loss"]

    w, losses = own_update()
    assert torch.equal(filled(), w)
    assert_close(w, torch.full((2,), 0.8 ** 3), rtol=1e-6, atol=0)  # float32: w <- 0.8 w three times
    assert losses == pytest.approx([2.0, 2.0 * 0.8 ** 2, 2.0 * 0.8 ** 4], rel=1e-6)
    with pytest.raises(ValueError, match="optimizer"):
        fit(lambda b: None, steps=1, schedule=constant(0.1))


def _one_line(e: pytest.ExceptionInfo) -> str:
    msg = str(e.value)
    assert len(msg.splitlines()) == 1
    return msg


@pytest.mark.parametrize("state, words", [
    ({"done": {}, "current": None}, "another experiment"),                              # a Stages file
    ({"step": 3, "learner": {}, "gen": torch.ByteTensor(), "history": [], "train_loss": []}, "another"),
])
def test_a_checkpoint_of_another_schema_is_refused_with_one_line(tmp_path, state, words):
    Checkpoint(tmp_path).save(state)
    with pytest.raises(RunDirError) as e:
        _run(tmp_path, checkpoint=Checkpoint(tmp_path))
    assert words in _one_line(e) and "checkpoint.pt" in str(e.value)


def test_a_checkpoint_of_another_loop_with_the_same_keys_is_refused_with_one_line(tmp_path):
    ckpt = StopAfter(tmp_path, n=1, every=5)
    with pytest.raises(Stop):  # the same schema, written by a loop over another model
        other = nn.Linear(2, 2)
        fit(lambda b: other(b).sum(), lambda _: torch.ones(1, 2), steps=9, modules={"model": other},
            optimizer=make_optimizer(other.parameters(), "adam", 1e-3),
            generator={"batches": torch.Generator(), "global": torch.default_generator}, checkpoint=ckpt)
    with pytest.raises(RunDirError) as e:
        _run(tmp_path, checkpoint=Checkpoint(tmp_path))
    assert "does not fit this training loop" in _one_line(e)
    with pytest.raises(RunDirError) as e:  # other module names
        fit(lambda b: None, steps=9, modules={"learner": other}, checkpoint=Checkpoint(tmp_path))
    assert "another experiment" in _one_line(e)


def test_stages_skip_finished_stages_resume_the_current_one_and_refuse_other_files(tmp_path):
    def train(scale, checkpoint):
        w = torch.zeros(1, requires_grad=True)
        fit(lambda _: (w - scale).pow(2).sum(), steps=6, optimizer=make_optimizer([w], "sgd", 0.1), params=[w],
            checkpoint=checkpoint)
        return {"w": w.detach().clone()}

    for d in ("full", "cut", "other"):
        (tmp_path / d).mkdir()
    full = Stages(tmp_path / "full", resume=False, every=2)
    want = {name: full.run(name, train, s) for name, s in (("a", 1.0), ("b", 3.0))}

    class StopSecond(Checkpoint):
        saves = 0

        def save(self, state):
            super().save(state)
            StopSecond.saves += 1
            if StopSecond.saves == 4:  # a: 2 partial saves + done; b: the first partial save
                raise Stop

    cut = Stages(tmp_path / "cut", resume=False, every=2)
    cut.ckpt = StopSecond(tmp_path / "cut", every=2)
    with pytest.raises(Stop):
        for name, s in (("a", 1.0), ("b", 3.0)):
            cut.run(name, train, s)
    saved = Checkpoint(tmp_path / "cut").load()
    assert list(saved["done"]) == ["a"] and saved["current"]["stage"] == "b"
    assert saved["current"]["state"]["step"] == 2
    again = Stages(tmp_path / "cut", resume=True, every=2)
    assert again.run("a", lambda ckpt: 1 / 0) == want["a"]  # finished: not run again
    assert torch.equal(again.run("b", train, 3.0)["w"], want["b"]["w"])
    assert not Stages(tmp_path / "cut", resume=False).done  # a fresh run ignores the file

    Checkpoint(tmp_path / "other").save({"done": {}, "current": {"key": "a", "step": 3}})  # an old schema
    with pytest.raises(RunDirError) as e:
        Stages(tmp_path / "other", resume=True)
    assert "another experiment or version" in _one_line(e)


def test_derive_seed_is_the_old_formula_and_never_collides():
    assert derive_seed(3, 0) == 3000 and derive_seed(0, 999) == 999 and derive_seed(7, 10 * 5 + 2) == 7052
    seeds = {derive_seed(s, i) for s in range(-3, 4) for i in range(1000)}
    assert len(seeds) == 7 * 1000
    for bad in (-1, 1000):
        with pytest.raises(ValueError, match=f"index={bad}"):
            derive_seed(1, bad)


def test_make_optimizer_names_and_refusal():
    p = [torch.zeros(1, requires_grad=True)]
    sgd = make_optimizer(p, "sgd", 0.1, momentum=0.9, nesterov=True, weight_decay=1e-4)
    assert isinstance(sgd, torch.optim.SGD) and sgd.defaults["nesterov"] and sgd.defaults["momentum"] == 0.9
    assert make_optimizer(p, "sgd", 0.1).defaults["momentum"] == 0
    assert isinstance(make_optimizer(p, "adam", 0.1), torch.optim.Adam)
    with pytest.raises(ValueError, match="'lbfgs'.*'adam' or 'sgd'"):
        make_optimizer(p, "lbfgs", 0.1)


def test_a_non_finite_loss_stops_with_one_line_and_keeps_the_last_good_checkpoint(tmp_path):
    from adaptlab.errors import DivergedError
    from adaptlab.io import Checkpoint

    w = torch.ones(1, requires_grad=True)
    ckpt = Checkpoint(tmp_path, every=2)

    def step(i):
        return (w * (float("nan") if i == 5 else 1.0)).sum()

    with pytest.raises(DivergedError, match=r"diverged at step 6: loss=nan; lower the learning rate"):
        fit(step, steps=10, optimizer=torch.optim.SGD([w], lr=0.1), params=[w], checkpoint=ckpt)
    state = ckpt.load()
    assert state["step"] == 4 and torch.isfinite(state["params"][0]).all()
