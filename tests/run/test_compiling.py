"""--compile auto decides by payoff (run/compiling.py): the rule, the switch from the eager to
the compiled step inside a run, the run's log and the cost index, and where the caches are."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any

import pytest
import torch

import widerl
from widerl.run import compiling, warm_up
from widerl.run.compiling import CostIndex, Decision, cache_root, payoff, use_cache_folder
from widerl.run.trainer import Trainer

TINY = {"env": "Pendulum-v1", "units": 16, "layers": 2, "batch_size": 32, "buffer_size": 5_000,
        "warmup": 200, "eval_episodes": 1, "progress": False, "threads": 1}  # fmt: skip


def rows(run: Path) -> list[dict[str, str]]:
    with (run / "metrics.csv").open() as f:
        return list(csv.DictReader(f))


def test_payoff_compiles_when_the_saving_repays_the_compilation() -> None:
    # Never compiled here: a prior 0.7x of eager, and the slowest cold compilation seen.
    d = payoff(10_000, 10.0, None, 20.0)  # saves 10,000 x 3 ms = 30 s > 20 s
    assert d.compile and "cache cold" in d.reason and "saves ~30 s > ~20 s" in d.reason
    assert not payoff(5_000, 10.0, None, 20.0).compile  # 15 s <= 20 s
    d = payoff(5_000, 10.0, None, None)  # nothing measured on this device: the prior cold cost
    assert not d.compile and f"~{compiling.PRIOR_COLD_S:.0f} s to compile" in d.reason
    # Compiled here before: today's compiled time scales with today's eager time, and the
    # cost is the warm one measured (or the warm prior after only a cold compilation).
    entry = {"cold_s": 25.0, "warm_s": 3.0, "eager_ms": 8.0, "compiled_ms": 4.0}
    d = payoff(1_000, 16.0, entry, 25.0)  # compiled 8 ms today: saves 8 s > 3 s
    assert d.compile and "8.00 ms compiled" in d.reason and "cache warm" in d.reason
    assert not payoff(300, 16.0, entry, 25.0).compile  # 2.4 s <= 3 s
    d = payoff(500, 10.0, {"cold_s": 25.0, "compiled_ms": 5.0}, 25.0)
    assert not d.compile and f"~{compiling.PRIOR_WARM_S:.0f} s" in d.reason  # 2.5 s vs prior
    assert not payoff(10**6, 5.0, {"compiled_ms": 6.0, "warm_s": 1.0}, None).compile  # slower
    # --utd 4: one graph of 4 updates, so the priors' compile costs are 4 times a step's.
    d = payoff(10**6, 10.0, None, None, per_call=4)
    assert f"~{4 * compiling.PRIOR_COLD_S:.0f} s to compile" in d.reason
    d = payoff(10**6, 10.0, {"cold_s": 25.0, "compiled_ms": 5.0}, None, per_call=4)
    assert f"~{4 * compiling.PRIOR_WARM_S:.0f} s to compile" in d.reason


@pytest.fixture(autouse=True)
def own_index(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test its own cost index (the figures of one never steer another)."""
    monkeypatch.setenv("WIDERL_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def quick_decision(monkeypatch: pytest.MonkeyPatch) -> None:
    """Decide after 5 eager updates (2 skipped), time 3 first compiled calls and 5 after,
    and compile with aot_eager (inductor's capture, eager kernels: seconds to build)."""
    import widerl.run.step as learner

    for name, value in (("EAGER_SKIPPED", 2), ("EAGER_TIMED", 5), ("FIRST_CALLS", 3),
                        ("COMPILED_TIMED", 5)):  # fmt: skip
        monkeypatch.setattr(compiling, name, value)
    original = learner.compile_step
    monkeypatch.setattr(learner, "compile_step", lambda fn, dev, backend="inductor", **kw:
        original(fn, dev, "aot_eager", **kw))  # fmt: skip


def test_auto_switches_to_the_compiled_step_when_it_pays(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, quick_decision: None
) -> None:
    """A run that starts eager, decides at update 7, learns compiled from update 8 on: its
    rows are the eager run's but for float rounding; run.log says why; the index keeps what
    compiling cost, so the next run of the configuration expects a warm cache."""
    monkeypatch.setattr(compiling, "payoff", lambda *a: Decision(True, "forced by the test"))
    settings = {**TINY, "algo": "td3", "steps": 60, "eval_every": 30}
    widerl.train(widerl.resolve({**settings, "compile": "auto"}), tmp_path / "auto")
    widerl.train(widerl.resolve({**settings, "compile": "off"}), tmp_path / "eager")
    switched, eager = rows(tmp_path / "auto"), rows(tmp_path / "eager")
    assert [r["grad_step"] for r in switched] == ["0", "30", "60"]
    for a, b in zip(switched, eager, strict=True):
        assert a["env_step"] == b["env_step"]
        for k in ("critic_loss", "q_mean", "actor_loss"):
            if b[k]:
                assert float(a[k]) == pytest.approx(float(b[k]), rel=1e-4, abs=1e-5), k
    log = (tmp_path / "auto" / "run.log").read_text().splitlines()
    assert "compile auto: on at update 7: forced by the test (key " in log[0]
    assert "s compiling (cache cold), then" in log[1] and "ms eager" in log[1]
    assert not (tmp_path / "eager" / "run.log").exists()  # off decides nothing
    (entry,) = CostIndex().read().values()
    assert entry["device"] == "cpu" and entry["cold_s"] >= 0 and "warm_s" not in entry
    assert entry["eager_ms"] > 0 and entry["compiled_ms"] > 0
    # The same configuration again (another seed, longer): the index says warm.
    settings |= {"seed": 1, "steps": 40, "eval_every": 40}
    widerl.train(widerl.resolve({**settings, "compile": "on"}), tmp_path / "again")
    log = (tmp_path / "again" / "run.log").read_text().splitlines()
    assert "compile on: compiled step (cache warm, key" in log[0] and "(cache warm)" in log[1]
    (entry,) = CostIndex().read().values()
    assert entry["warm_s"] >= 0 and entry["cold_s"] >= 0
    # Both of TD3's graphs (with and without the delayed actor step) were saved by the first
    # run and loaded by the second, whose rows are an eager run's but for float rounding.
    first = (tmp_path / "auto" / "run.log").read_text().splitlines()[1]
    # So were its two acting graphs (compiling.CompiledActing: collection and evaluation).
    assert first.endswith("graphs: compiled and saved, compiled and saved; "
                          "acting: compiled and saved, compiled and saved")  # fmt: skip
    assert log[1].endswith("graphs: loaded, loaded; acting: loaded, loaded")
    assert len(list((cache_root() / "steps").glob("*-step-*.compiled"))) == 2
    assert len(list((cache_root() / "steps").glob("*-act-*.compiled"))) == 2
    widerl.train(widerl.resolve({**settings, "compile": "off"}), tmp_path / "again_eager")
    for a, b in zip(rows(tmp_path / "again"), rows(tmp_path / "again_eager"), strict=True):
        assert a["env_step"] == b["env_step"]
        for k in ("critic_loss", "q_mean", "actor_loss"):
            if b[k]:
                assert float(a[k]) == pytest.approx(float(b[k]), rel=1e-4, abs=1e-5), k


def test_a_saved_step_that_does_not_load_is_compiled_again(
    tmp_path: Path, quick_decision: None
) -> None:
    """Damaged saved steps (here cut in half) are compiled again and replaced, and the run
    learns what it learned from the intact ones."""
    settings = {**TINY, "algo": "td3", "steps": 30, "eval_every": 30, "compile": "on"}
    widerl.train(widerl.resolve(settings), tmp_path / "first")
    saved = sorted((cache_root() / "steps").glob("*-step-*.compiled"))
    assert len(saved) == 2
    assert len(list((cache_root() / "steps").glob("*-act-*.compiled"))) == 2  # collect, eval
    for f in saved:
        f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    widerl.train(widerl.resolve(settings), tmp_path / "damaged")
    log = (tmp_path / "damaged" / "run.log").read_text().splitlines()[1]
    assert log.count(" did not load (") == 2 and log.count("), compiled") == 2
    learned = ("grad_step", "critic_loss", "q_mean", "actor_loss", "eval_return_mean")

    def learning(run: str) -> list[list[str]]:
        return [[r[k] for k in learned] for r in rows(tmp_path / run)]

    assert learning("damaged") == learning("first")
    widerl.train(widerl.resolve(settings), tmp_path / "third")  # the replaced files load
    third = (tmp_path / "third" / "run.log").read_text().splitlines()
    assert third[1].endswith("graphs: loaded, loaded; acting: loaded, loaded")
    assert learning("third") == learning("first")


def test_a_cold_compile_traces_each_graph_once(tmp_path: Path, quick_decision: None) -> None:
    """No argument of the step makes TorchDynamo start a trace again (a 0-d beta did: about
    2 s more of a cold compile). With prioritized replay, where beta is used."""
    torch._dynamo.reset()  # TorchDynamo remembers floats to fix from an earlier trace
    settings = {**TINY, "algo": "td3", "sampler": "prioritized", "steps": 4, "eval_every": 4,
                "compile": "on"}  # fmt: skip
    (tmp_path / "run").mkdir()
    trainer = Trainer(widerl.resolve(settings), tmp_path / "run")
    trainer.run()
    step = trainer.parts.learner._fn  # TD3: the step with and without the actor's update
    assert step.events == ["compiled and saved"] * 2
    assert step.traces == 2


class Toy:
    """A step-like method over its owner's tensor."""

    def __init__(self) -> None:
        self.w = torch.ones(3)

    def step(self, x: list[torch.Tensor], flag: bool) -> torch.Tensor:
        return x[0] * self.w if flag else x[0] + self.w


def saved_toy(toy: Toy) -> compiling.SavedStep:
    return compiling.SavedStep(toy.step, "toy", lambda guards: torch.compile(
        toy.step, fullgraph=True, dynamic=False, backend="aot_eager",
        options={"guard_filter_fn": guards} if guards else None))  # fmt: skip


def test_a_saved_step_per_call_spec_reads_its_owners_tensors_when_called() -> None:
    """One saved graph per distinct call spec (a flag's value, a tensor's shape); another
    SavedStep over another owner (as in a later process) loads them, and the loaded graphs
    read the owner's tensors at each call, not the values they were compiled with."""
    x3, x4 = [torch.arange(3.0)], [torch.arange(4.0)]
    first = saved_toy(Toy())
    assert torch.equal(first(x3, True), torch.arange(3.0))
    assert torch.equal(first(x3, False), torch.arange(3.0) + 1)
    assert first.events == ["compiled and saved"] * 2
    assert len(list((cache_root() / "steps").glob("toy-*.compiled"))) == 2
    toy = Toy()
    later = saved_toy(toy)
    toy.w.fill_(2.0)
    assert torch.equal(later(x3, True), torch.arange(3.0) * 2)
    assert torch.equal(later(x3, False), torch.arange(3.0) + 2)
    assert later.events == ["loaded"] * 2 and later.compiled is None  # nothing traced
    toy.w = torch.ones(4)  # another shape: another spec, compiled and saved anew
    assert torch.equal(later(x4, True), torch.arange(4.0))
    assert later.events[-1] == "compiled and saved"
    assert compiling.call_spec((x3, True)) != compiling.call_spec((x3, False))
    assert compiling.call_spec((x3, True)) != compiling.call_spec(([x3[0].double()], True))


def test_a_graph_another_process_is_compiling_is_waited_for_and_loaded(
    tmp_path: Path,
) -> None:
    """A missed graph whose claim a live process holds is waited for and loaded, not compiled
    a second time; a claim of a process that ended (reaped or a zombie) is taken over."""
    import subprocess
    import threading
    import time

    x3 = [torch.arange(3.0)]
    saved_toy(Toy())(x3, True)  # the graph "another process" will have compiled
    (path,) = (cache_root() / "steps").glob("toy-*.compiled")
    path.rename(tmp_path / "elsewhere")
    claim = path.with_name(path.name + ".building")
    other = subprocess.Popen(["sleep", "60"])  # the live process compiling it
    claim.write_text(str(other.pid))

    def other_finishes() -> None:
        time.sleep(0.5)
        (tmp_path / "elsewhere").rename(path)
        claim.unlink()

    threading.Thread(target=other_finishes).start()
    step = saved_toy(Toy())
    assert torch.equal(step(x3, True), torch.arange(3.0))
    (event,) = step.events
    assert event.startswith("loaded, compiled by another process (") and event.endswith(
        " s waited)"
    )
    assert float(event.split("(")[1].split(" s")[0]) >= 0.4
    assert step.traces == 0  # nothing traced here
    other.kill()
    other.wait()
    # Claims of ended processes: one waited for (reaped), one not yet (a zombie).
    zombie = subprocess.Popen(["true"])
    while Path(f"/proc/{zombie.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
        time.sleep(0.01)
    for pid in (other.pid, zombie.pid):
        path.unlink()
        claim.write_text(str(pid))
        step = saved_toy(Toy())
        t0 = time.monotonic()
        assert torch.equal(step(x3, True), torch.arange(3.0))
        assert time.monotonic() - t0 < compiling.CLAIM_WAIT_S
        assert step.events == ["compiled and saved"] and not claim.exists()
    zombie.wait()


@pytest.mark.parametrize(("algo", "mode"), [("td3", "auto"), ("crossq", "on")])
def test_a_cold_compile_builds_the_second_graph_in_a_second_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, quick_decision: None, algo: str, mode: str
) -> None:
    """Cache cold: the run compiles the graph with the delayed actor step, a second process
    (`python -m widerl.run.warm_up`, here with aot_eager as the run) the graph without it,
    at once; the run loads the second process's graph, having traced one graph itself, and
    its rows are an eager run's but for float rounding. TD3, auto compiling from its eighth
    update (an actor step): the run's first compiled call takes its own graph. CrossQ, on:
    its first update is no actor step, so the run compiles its third's graph first
    (`compile_ahead`). `on` starts the second process before the warm-up, auto at its
    decision."""
    monkeypatch.setattr(compiling, "payoff", lambda *a: Decision(True, "forced by the test"))
    import time

    monkeypatch.setattr(compiling, "SECOND_PROCESS_BACKENDS", {"inductor", "aot_eager"})
    monkeypatch.setattr(compiling, "usable_cpus", lambda: 2)
    take = compiling.take_claim

    def after_the_second_process_claims(claim: Path) -> float | None:
        # The run's first graph compiles in seconds with aot_eager, faster than the second
        # process starts: wait until it has claimed its graph (or saved it), as a run's
        # inductor compile does by taking longer.
        waited = take(claim)
        for _ in range(1200):
            others = [f for f in claim.parent.iterdir() if f.name != claim.name]
            if others:
                break
            time.sleep(0.05)
        return waited

    monkeypatch.setattr(compiling, "take_claim", after_the_second_process_claims)
    settings = {**TINY, "algo": algo, "steps": 30, "eval_every": 30, "compile": mode}
    (tmp_path / "run").mkdir()
    trainer = Trainer(widerl.resolve(settings), tmp_path / "run")
    trainer.run()
    log = (tmp_path / "run" / "run.log").read_text().splitlines()
    assert log[1].endswith("one of the step's two graphs compiles in a second process")
    step = trainer.parts.learner._fn
    assert step.events[0] == "compiled and saved" and step.events[1].startswith("loaded")
    assert step.traces == 1
    assert len(list((cache_root() / "steps").glob("*-step-*.compiled"))) == 2
    assert not list((cache_root() / "steps").glob("*.building"))
    widerl.train(widerl.resolve({**settings, "compile": "off"}), tmp_path / "eager")
    for a, b in zip(rows(tmp_path / "run"), rows(tmp_path / "eager"), strict=True):
        assert a["env_step"] == b["env_step"]
        for k in ("critic_loss", "q_mean", "actor_loss"):
            if b.get(k):
                assert float(a[k]) == pytest.approx(float(b[k]), rel=1e-4, abs=1e-5), k
    # Warm: no second process.
    widerl.train(widerl.resolve(settings), tmp_path / "again")
    log = (tmp_path / "again" / "run.log").read_text().splitlines()
    assert log[1].endswith("graphs: loaded, loaded; acting: loaded, loaded")


def test_a_second_process_that_cannot_start_leaves_both_graphs_to_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, quick_decision: None
) -> None:
    import widerl.run.trainer as trainer

    def cannot_start(*_: object) -> None:
        raise OSError("[Errno 12] Cannot allocate memory")

    monkeypatch.setattr(compiling, "SECOND_PROCESS_BACKENDS", {"aot_eager"})
    monkeypatch.setattr(compiling, "usable_cpus", lambda: 2)
    monkeypatch.setattr(trainer, "start_second_graph", cannot_start)
    settings = {**TINY, "algo": "td3", "steps": 20, "eval_every": 20, "compile": "on"}
    widerl.train(widerl.resolve(settings), tmp_path / "run")
    log = (tmp_path / "run" / "run.log").read_text().splitlines()
    assert log[1].endswith("cold compile: no second process ([Errno 12] Cannot allocate "
                           "memory); both graphs compile here")  # fmt: skip
    assert log[2].endswith("graphs: compiled and saved, compiled and saved; "
                           "acting: compiled and saved, compiled and saved")  # fmt: skip


def compiled_agent(algo: str, key: str) -> tuple[Any, Any]:
    """A tiny agent whose learning step is compiled (aot_eager) and kept under `key`, and the
    step; HalfCheetah-v5's sizes without an env."""
    from widerl.agents import make_agent
    from widerl.bench.update import random_replay
    from widerl.run.step import LearnStep

    cfg = widerl.resolve({**TINY, "env": "HalfCheetah-v5", "algo": algo}, None)
    agent = make_agent(cfg, 17, 6, torch.device("cpu"))
    step = LearnStep(random_replay(17, 6, 500, seed=0), agent.features, agent, cfg.batch_size)
    step.save_compiled_as(key)
    step.compile("aot_eager")
    return agent, step


@pytest.mark.parametrize("algo", ["td3", "crossq"])
def test_a_compiled_step_compiles_acting_with_eagers_actions(algo: str) -> None:
    """With its step compiled and kept, an agent acts through saved graphs of its policy, one
    per call spec, traced in eval mode (CrossQ's Batch Renormalization on its running
    statistics) and called without switching the networks' modes; the actions and the
    noise streams are eager acting's. A later agent of the configuration loads the graphs,
    and they read its current weights."""
    agent, step = compiled_agent(algo, "acting")
    assert agent.acting_graph is None  # until the end of the step's first compiled call
    stream = agent.act_gens[0].get_state()
    for _ in range(3):  # the running statistics move away from their initial values
        step(0, 100)
    # After the first call, the graphs of a run's acting (one env, one evaluation episode),
    # without a draw from the acting streams.
    graph = agent.acting_graph
    assert graph is not None and graph.saved.events == ["compiled and saved"] * 2
    assert torch.equal(agent.act_gens[0].get_state(), stream)
    obs = torch.randn(1, 4, 17)
    modes = [m.training for m in agent.modules()]
    compiled = [agent.act(obs), agent.act(obs, deterministic=True), agent.act(obs[0, :1])]
    assert graph.saved.events == ["compiled and saved"] * 4  # [1, 4] ones, a run's [1, 1]
    assert [m.training for m in agent.modules()] == modes  # no switch, none left behind
    agent.acting_graph = None
    agent.act_gens[0].set_state(stream)
    eager = [agent.act(obs), agent.act(obs, deterministic=True), agent.act(obs[0, :1])]
    for c, e in zip(compiled, eager, strict=True):
        assert torch.equal(c, e)
    assert len(list((cache_root() / "steps").glob("acting-act-*.compiled"))) == 4
    later, later_step = compiled_agent(algo, "acting")
    later_step(0, 100)  # a run's graphs loaded after the first call
    with torch.no_grad():
        for p in later.actor.parameters():
            p.mul_(0.5)
    loaded = later.act(obs, deterministic=True)
    assert later.acting_graph.saved.events == ["loaded"] * 3
    later.acting_graph = None
    assert torch.equal(loaded, later.act(obs, deterministic=True))
    assert not torch.equal(loaded, eager[1])


def test_acting_torch_cannot_compile_ahead_of_time_stays_eager(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Where aot_compile fails for the policy, the agent acts eagerly from then on (a guarded
    torch.compile would trace it again outside eval mode)."""
    agent, step = compiled_agent("td3", "refused")
    refuse_policy = compiling.SavedStep._aot_compile

    def refuse(self: compiling.SavedStep, args: tuple) -> Any:
        if self.name.endswith("-act"):
            raise RuntimeError("cannot serialize this")
        return refuse_policy(self, args)

    monkeypatch.setattr(compiling.SavedStep, "_aot_compile", refuse)
    step(0, 100)
    assert agent.acting_graph is None
    assert step.acting_events() == ["not saved: torch.compile with guards (RuntimeError)"]
    obs = torch.randn(2, 17)
    stream = agent.act_gens[0].get_state()
    refused = agent.act(obs)
    agent.act_gens[0].set_state(stream)
    assert torch.equal(refused, agent.act(obs))


def test_a_step_torch_cannot_compile_ahead_of_time_falls_back_to_torch_compile(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Where aot_compile fails, the step is torch.compile'd with its guards (nothing saved):
    each spec still gets its own graph (a guard-free fallback would reuse the first)."""

    def refuse(self: object, *_: object) -> None:
        raise RuntimeError("cannot serialize this")

    monkeypatch.setattr(compiling.SavedStep, "_aot_compile", refuse)
    step = saved_toy(Toy())
    x3 = [torch.arange(3.0)]
    assert torch.equal(step(x3, True), torch.arange(3.0))
    assert torch.equal(step(x3, False), torch.arange(3.0) + 1)
    assert step.events == ["not saved: torch.compile with guards (RuntimeError)"] * 2
    assert not list((cache_root() / "steps").glob("*.compiled"))


def test_only_the_most_recently_used_saved_steps_stay(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(compiling, "KEEP_SAVED", 2)
    folder = cache_root() / "steps"
    folder.mkdir(parents=True)
    for i in range(4):
        (folder / f"s{i}.compiled").write_text("x")
        os.utime(folder / f"s{i}.compiled", (i, i))
    compiling._prune(folder)
    assert sorted(f.name for f in folder.iterdir()) == ["s2.compiled", "s3.compiled"]


def test_auto_with_calls_of_several_updates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, quick_decision: None
) -> None:
    """--utd 2: the timing windows count updates in calls of 2 (1 call skipped, 3 timed:
    the decision after update 8), the compiled graph holds both updates, and the rows are
    the eager run's but for float rounding; the index says how many updates a call ran."""
    monkeypatch.setattr(compiling, "payoff", lambda *a: Decision(True, "forced by the test"))
    settings = {**TINY, "algo": "td3", "utd": 2, "steps": 60, "eval_every": 30}
    widerl.train(widerl.resolve({**settings, "compile": "auto"}), tmp_path / "auto")
    widerl.train(widerl.resolve({**settings, "compile": "off"}), tmp_path / "eager")
    for a, b in zip(rows(tmp_path / "auto"), rows(tmp_path / "eager"), strict=True):
        assert (a["grad_step"], a["env_step"]) == (b["grad_step"], b["env_step"])
        for k in ("critic_loss", "q_mean", "actor_loss"):
            if b[k]:
                assert float(a[k]) == pytest.approx(float(b[k]), rel=1e-4, abs=1e-5), k
    log = (tmp_path / "auto" / "run.log").read_text().splitlines()
    assert "compile auto: on at update 8: forced by the test" in log[0]
    (entry,) = CostIndex().read().values()
    assert entry["per_call"] == 2 and entry["compiled_ms"] > 0


def test_auto_stays_eager_when_compiling_would_not_pay(
    tmp_path: Path, quick_decision: None
) -> None:
    """The real rule on a short run: a cold cache (PRIOR_COLD_S) outweighs 50 updates."""
    widerl.train(widerl.resolve({**TINY, "steps": 60, "eval_every": 60}), tmp_path / "run")
    (line,) = (tmp_path / "run" / "run.log").read_text().splitlines()
    assert "compile auto: off at update 7: 53 updates left x (" in line
    assert "cache cold: never compiled here" in line
    assert CostIndex().read() == {}  # nothing compiled, nothing recorded


def test_the_cache_folder(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("WIDERL_CACHE", str(tmp_path / "w"))
    assert cache_root() == tmp_path / "w"
    monkeypatch.delenv("WIDERL_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert cache_root() == tmp_path / "x" / "widerl"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache_root() == Path.home() / ".cache" / "widerl"
    # torch's caches go under it unless TORCHINDUCTOR_CACHE_DIR says otherwise.
    monkeypatch.setenv("WIDERL_CACHE", str(tmp_path / "w"))
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR")
    assert use_cache_folder() == tmp_path / "w" / "torch"
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path / "w" / "torch")
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "mine"))
    assert use_cache_folder() == tmp_path / "mine"


def test_the_index_survives_a_damaged_file(tmp_path: Path) -> None:
    index = CostIndex(tmp_path / "costs.json")
    (tmp_path / "costs.json").write_text("{not json")
    assert index.read() == {}
    index.update("k", cold_s=1.0)
    index.update("k", warm_s=0.5)
    assert json.loads((tmp_path / "costs.json").read_text()) == {
        "k": {"cold_s": 1.0, "warm_s": 0.5}
    }


def test_the_key_is_what_the_step_depends_on() -> None:
    from widerl.run.compiling import step_key

    dims, cpu = {"obs_dim": 3, "act_dim": 1}, torch.device("cpu")
    key = step_key(widerl.resolve(TINY), dims, cpu, 1)
    assert step_key(widerl.resolve({**TINY, "seed": 5, "steps": 9}), dims, cpu, 1) == key
    assert step_key(widerl.resolve({**TINY, "units": 32}), dims, cpu, 1) != key
    assert step_key(widerl.resolve(TINY), dims, cpu, 2) != key
    assert step_key(widerl.resolve(TINY), {"obs_dim": 4, "act_dim": 1}, cpu, 1) != key


def test_the_key_changes_with_the_kind_of_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    # A saved step's code is built for the CPU's vector instructions: a cache folder shared
    # by unlike nodes must not hand one node's build to another.
    from widerl.run.compiling import step_key

    dims, cpu = {"obs_dim": 3, "act_dim": 1}, torch.device("cpu")
    key = step_key(widerl.resolve(TINY), dims, cpu, 1)
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "NO_AVX")
    assert step_key(widerl.resolve(TINY), dims, cpu, 1) != key


def test_the_key_changes_with_widerls_source(monkeypatch: pytest.MonkeyPatch) -> None:
    # An edited loss traces another graph: the index must not call its compilation warm.
    from widerl.run import compiling

    dims, cpu = {"obs_dim": 3, "act_dim": 1}, torch.device("cpu")
    key = compiling.step_key(widerl.resolve(TINY), dims, cpu, 1)
    assert len(compiling.source_fingerprint()) == 12
    monkeypatch.setattr(compiling, "source_fingerprint", lambda: "edited")
    assert compiling.step_key(widerl.resolve(TINY), dims, cpu, 1) != key


def test_the_cache_warm_up_child_compiles_the_runs_step(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, quick_decision: None
) -> None:
    """A run that stays eager for a cold cache, but would have gained from a warm one, starts
    the warm-up child (here its command runs in this process, compiling with aot_eager):
    the child builds the run's learning step on random transitions, compiles it and records
    its cost; the run then decides again with the warm figures and switches."""
    import subprocess
    import sys

    started: list[list[str]] = []

    class Child:  # what subprocess.Popen returns, for a command run here at once
        returncode = 0

        def __init__(self, cmd: list[str], **_: object) -> None:
            started.append(cmd)
            assert cmd[:3] == [sys.executable, "-m", "widerl.run.warm_up"]
            payload = json.loads(cmd[3])
            warm_up._warm(payload, int(cmd[4]))
            Path(payload["claim"]).unlink()

        def poll(self) -> int:
            return 0

        def wait(self, timeout: float | None = None) -> int:
            return 0

    monkeypatch.setattr(subprocess, "Popen", Child)
    monkeypatch.setattr(compiling, "WARM_POLL", 4)
    monkeypatch.setattr(compiling, "worth_warming", lambda left, ms: True)
    # Cold: no compile; after the child, compile whatever the figures say.
    real = compiling.payoff
    monkeypatch.setattr(compiling, "payoff", lambda left, ms, entry, cold, per_call=1: Decision(
        entry is not None, real(left, ms, entry, cold, per_call).reason))  # fmt: skip
    settings = {**TINY, "algo": "td3", "steps": 40, "eval_every": 40, "compile": "auto"}
    widerl.train(widerl.resolve(settings), tmp_path / "run")
    log = (tmp_path / "run" / "run.log").read_text().splitlines()
    assert "compile auto: off at update 7" in log[0] and "cache cold" in log[0]
    assert log[1].endswith("warming the cache in a background process (lowest priority)")
    assert "compile auto: on at update 9 after the cache warm-up:" in log[2]
    assert "cache warm" in log[2] and "(cache warm), then" in log[3]
    assert log[3].endswith("graphs: loaded, loaded; acting: loaded, loaded")  # the child's
    assert len(started) == 1
    (entry,) = CostIndex().read().values()
    assert entry["warmed_by_child"] and entry["cold_s"] >= 0 and entry["warm_s"] >= 0
    assert entry["eager_ms"] > 0 and entry["compiled_ms"] > 0
    assert not list(cache_root().glob("warming-*"))  # the claim is gone


def test_one_warm_up_per_configuration_at_a_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import subprocess

    from widerl.run.compiling import start_warm_up

    monkeypatch.setattr(subprocess, "Popen", lambda cmd, **kw: cmd)
    cfg = widerl.resolve(TINY)
    dims, cpu = {"obs_dim": 3, "act_dim": 1}, torch.device("cpu")
    assert start_warm_up(cfg, None, dims, cpu, "k1") is not None
    assert start_warm_up(cfg, None, dims, cpu, "k1") is None  # claimed by the first
    assert start_warm_up(cfg, None, dims, cpu, "k2") is not None
    claim = cache_root() / "warming-k1"
    os.utime(claim, (0, 0))  # a claim over an hour old: its child died; warm again
    assert start_warm_up(cfg, None, dims, cpu, "k1") is not None


def test_worth_warming() -> None:
    # A warm cache pays when (1 - 0.7) of the eager time left exceeds twice the warm cost.
    assert compiling.worth_warming(3_000, 8.0)  # 7.2 s > 6 s
    assert not compiling.worth_warming(2_000, 8.0)  # 4.8 s


def test_a_run_waits_for_another_runs_warm_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, quick_decision: None
) -> None:
    """Two runs of one configuration at once (seeds of an experiment): the second finds the
    first's claim, starts no child, and decides again once the other child's figures are in
    the index."""
    from widerl.run.compiling import CompileChoice

    monkeypatch.setattr(compiling, "WARM_POLL", 4)
    monkeypatch.setattr(compiling, "worth_warming", lambda left, ms: True)
    import widerl.run.trainer as trainer

    monkeypatch.setattr(trainer, "start_warm_up", lambda *a: None)  # the other run's claim
    cache_root().mkdir(parents=True)
    call = CompileChoice.__call__

    def other_child_finishes(self: CompileChoice, grad_step: int, total: int, n: int = 1,
                             ) -> object:  # fmt: skip
        if self.calls == 0:
            (cache_root() / f"warming-{self.key}").write_text("1")  # the other run's claim
        if self.calls == 10:  # the other run's child records its figures
            CostIndex().update(self.key, device="cpu", cold_s=9.0, warm_s=0.0,
                               eager_ms=2.0, compiled_ms=0.1)  # fmt: skip
        return call(self, grad_step, total, n)

    monkeypatch.setattr(CompileChoice, "__call__", other_child_finishes)
    settings = {**TINY, "algo": "td3", "steps": 3000, "eval_every": 3000, "compile": "auto"}
    monkeypatch.setattr(compiling, "PRIOR_COLD_S", 1e9)  # cold: never worth compiling
    # Stop the run early: the decision is all this test needs.
    from widerl.run.trainer import Trainer

    learn = Trainer.learn_step

    def stop_after_16(self: Trainer) -> None:
        learn(self)
        if self.grad_step >= 16:
            self.cfg.steps = self.grad_step

    monkeypatch.setattr(Trainer, "learn_step", stop_after_16)
    widerl.train(widerl.resolve(settings), tmp_path / "run")
    log = (tmp_path / "run" / "run.log").read_text().splitlines()
    assert "compile auto: off at update 7" in log[0]
    assert log[1].endswith("another run is warming the cache for this configuration")
    assert "compile auto: on at update 13 after the cache warm-up:" in log[2], log


def test_a_child_process_uses_the_runs_choice_of_product_kernels(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The warm-up child and the second graph's process save under the run's key, which holds
    the run's choice of kernels (nets/onednn.py): they take that choice, not their own."""
    from widerl.nets import onednn

    seen = {}
    monkeypatch.setattr(compiling.subprocess, "Popen", lambda *a, **kw: seen.update(kw))
    for use in (True, False):
        monkeypatch.setattr(onednn, "_decided", use)
        compiling._child(widerl.resolve(TINY), {})
        assert seen["env"][onednn.ENV] == ("onednn" if use else "blas")
