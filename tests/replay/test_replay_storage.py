"""The replay keeps each observation once (replay_storage.py): its memory figure, and that every
sampled transition is the one an env produced, whatever the order chunks arrive in."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

import widerl.collect.intake as intake_mod
from widerl.collect.collector import Chunk, Collector
from widerl.collect.intake import Intake
from widerl.replay.buffer import ReplayBuffer, compact_reserve, replay_nbytes, replay_rows

OBS = 4


class Scripted(gym.Env):
    """An env whose observations say who produced them: (env id, episode, step, 0); the last
    observation of an episode has 1 in the last place, so it is no reset's observation.
    Episodes terminate at scripted lengths or are truncated by the time limit; every step is
    logged as the env saw it (s, a, r, true s', terminated)."""

    def __init__(self, uid: int, log: dict[bytes, tuple], limit: int = 6) -> None:
        self.uid, self.log = uid, log
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (OBS,), np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
        self.episode = -1
        self.spec = gym.envs.registration.EnvSpec("Scripted-v0", max_episode_steps=limit)
        self.limit = limit

    def _obs(self, final: bool = False) -> np.ndarray:
        return np.array([self.uid, self.episode, self.t, float(final)], dtype=np.float32)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.episode += 1
        self.t = 0
        # Episode lengths 1..9 with this env's own pattern; longer ones hit the limit.
        self.length = 1 + (7 * self.uid + 3 * self.episode) % 9
        return self._obs(), {}

    def step(self, action: np.ndarray):
        s = self._obs()
        self.t += 1
        term = self.t >= self.length
        trunc = not term and self.t >= self.limit
        nxt = self._obs(final=term or trunc)
        rew = float(self.uid * 100 + self.episode + self.t / 10)
        self.log[s.tobytes()] = (np.asarray(action, np.float32).reshape(-1), rew, nxt, term)
        return nxt, rew, term, trunc, {}


def collectors(n: int, envs: int, log: dict) -> list[Collector]:
    out = []
    for c in range(n):
        vec = gym.vector.SyncVectorEnv(
            [lambda u=c * envs + e: Scripted(u, log) for e in range(envs)],
            autoreset_mode=gym.vector.AutoresetMode.SAME_STEP,
        )
        out.append(Collector(vec, seed=c, device=torch.device("cpu")))
    return out


def stream(
    cols: list[Collector], chunks: int, seed: int, weights: list[float] | None = None
) -> list[Chunk]:
    """Chunks of 1-4 steps of every env of a collector, collectors in a random order (the
    Ape-X learner takes chunks as they come; `weights`: how often each one sends)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(chunks):
        i = int(rng.choice(len(cols), p=weights))
        chunk = cols[i].collect(None, int(rng.integers(1, 5)))
        chunk.source = i
        out.append(chunk)
    return out


def check_samples(rb: ReplayBuffer, log: dict, kept: list[bytes], draws: int = 2000) -> None:
    """Every sampled transition is the env's, and one of the newest `rb.size` kept ones."""
    live = set(kept[len(kept) - rb.size :])
    b = rb.sample(draws, beta=0.5)
    for i in range(draws):
        s = b.obs[i].numpy()
        key = s.tobytes()
        assert key in live, (s, "not a stored transition")
        act, rew, nxt, term = log[key]
        assert np.array_equal(b.next_obs[i].numpy(), nxt), (s, b.next_obs[i], nxt)
        assert float(b.term[i]) == float(term) and float(b.rew[i]) == np.float32(rew)
        assert np.array_equal(b.act[i].numpy(), act)


def kept_rows(intake: Intake, chunks: list[Chunk]) -> list[bytes]:
    """The chunks into the intake; the observations of the transitions the replay got."""
    kept = []
    for ch in chunks:
        held = (intake.rows_seen + np.arange(len(ch))) % intake_mod.HOLDOUT_EVERY == 0
        rows = ch.obs[~held] if intake.holdout is not None else ch.obs
        kept += [s.tobytes() for s in rows]
        intake.add(ch, 0)
    return kept


@pytest.mark.parametrize("prioritized", [False, True])
@pytest.mark.parametrize("reserve", [None, 40, 6])  # a row for each; enough; too few
def test_sampled_pairs_are_what_the_env_produced(
    monkeypatch: pytest.MonkeyPatch, prioritized: bool, reserve: int | None
) -> None:
    """3 collectors of 2 envs each, chunks interleaved, one of them pausing, episodes ending by
    termination and by truncation (Gymnasium's final observation), one transition in 7 held
    out (OFENet's split: its predecessor has no stored successor) and a ring of 64 slots
    wrapped many times."""
    monkeypatch.setattr(intake_mod, "HOLDOUT_EVERY", 7)
    log: dict[bytes, tuple] = {}
    cols = collectors(3, 2, log)
    cap = 64
    rb = ReplayBuffer(OBS, 1, cap, prioritized=prioritized, seed=1, reserve=reserve)
    holdout = ReplayBuffer(OBS, 1, 32, seed=2)
    intake = Intake(rb, holdout)
    kept: list[bytes] = []
    for round_ in range(6):
        # The third collector pauses for two rounds: its open ends wait while the ring wraps.
        weights = [0.6, 0.4, 0.0] if round_ in (1, 2) else [0.5, 0.3, 0.2]
        kept += kept_rows(intake, stream(cols, 15, seed=round_, weights=weights))
        if prioritized:  # priorities that differ, so that every kind of row gets drawn
            b = rb.sample(64)
            rb.update_priorities(b.idx, torch.rand(64) * 3)
        if reserve != 6:
            assert rb.size == min(cap, len(kept))
        check_samples(rb, log, kept)
    assert len(kept) > 5 * cap
    if reserve == 6:  # the pool overflowed: the oldest transitions left early, never drawn
        assert rb.size < cap
    # The held-out buffer (every transition apart) is right too.
    b = holdout.sample(500)
    for s, nxt, term in zip(b.obs.numpy(), b.next_obs.numpy(), b.term.numpy(), strict=True):
        assert np.array_equal(nxt, log[s.tobytes()][2]) and term == log[s.tobytes()][3]


def test_links_are_found_across_interleaved_chunks() -> None:
    """With room for one pooled row per env and episode end, nothing leaves early: the pool
    holds only what it must, each open end is linked once its continuation arrives."""
    log: dict[bytes, tuple] = {}
    cols = collectors(3, 2, log)
    rb = ReplayBuffer(OBS, 1, 200, reserve=200)
    intake = Intake(rb, None)
    kept = kept_rows(intake, stream(cols, 40, seed=0))
    st = rb.storage
    pooled = int((st.next[: rb.size] >= rb.capacity).sum())
    ends = sum(1 for k in kept if log[k][2][3] == 1.0)  # episode ends stored
    assert pooled <= ends + 6  # + the open end of each of the 6 envs
    check_samples(rb, log, kept)


@pytest.mark.parametrize("prioritized", [False, True])
@pytest.mark.parametrize(("reserve", "chunks"), [(8, 47), (24, 44)])
def test_checkpoint_round_trip_mid_episode(
    tmp_path, prioritized: bool, reserve: int, chunks: int
) -> None:
    """A buffer saved mid-episode (open ends pending) and wrapped, with transitions that left
    early (pool of 8) or with pool rows of overwritten transitions not yet reclaimed (24),
    loads into a new buffer that then samples and takes chunks exactly as the first."""
    log: dict[bytes, tuple] = {}
    cols = collectors(2, 2, log)
    make = lambda: ReplayBuffer(OBS, 1, 48, prioritized=prioritized, seed=5, reserve=reserve)  # noqa: E731
    rb, kept = make(), []
    intake = Intake(rb, None)
    kept += kept_rows(intake, stream(cols, chunks, seed=0))
    rb.sample(7)
    st = rb.storage
    if reserve == 8:  # the live run of slots does not start at slot 0
        assert 0 < rb.size < 48 and st.start != 0
    else:
        assert rb.size == 48 and ((st.owner >= 0) & (st.owner < st.live)).any()
    path = tmp_path / "replay.pt"
    torch.save(rb.state_dict(), path)
    other = make()
    other.load_state_dict(torch.load(path, weights_only=True))
    assert (other.size, other.pos, other.storage.start) == (rb.size, rb.pos, rb.storage.start)
    rows = replay_rows(rb.state_dict())
    assert len(rows["obs"]) == rb.size
    for s, nxt in zip(rows["obs"].numpy(), rows["next_obs"].numpy(), strict=True):
        assert np.array_equal(nxt, log[s.tobytes()][2])
    other_intake = Intake(other, None)
    for chunk in stream(cols, 30, seed=1):  # the same chunks into both
        assert (other.size, other.storage.start) == (rb.size, rb.storage.start)
        kept += kept_rows(intake, [chunk])
        other_intake.add(chunk, 0)
        a, b = rb.sample(16, beta=0.6), other.sample(16, beta=0.6)
        for x, y in zip(a, b, strict=True):
            assert (x is None and y is None) or torch.equal(x, y)
        td = torch.rand(16)
        rb.update_priorities(a.idx, td)
        other.update_priorities(b.idx, td)
    # Not only the same values: the same layout (pointers, pool rows handed out in order).
    mine, theirs = rb.state_dict(), other.state_dict()
    assert mine.keys() == theirs.keys()
    for k, v in mine.items():
        assert torch.equal(v, theirs[k]) if isinstance(v, torch.Tensor) else v == theirs[k], k
    check_samples(other, log, kept)


def as_v1(state: dict) -> dict:
    """What the old layout (next_obs in every slot, state version 1) saved for the contents of
    a replay state: rows in slot order from slot 0."""
    assert state["start"] == 0
    rows = replay_rows(state)
    keep = ("obs_dim", "act_dim", "capacity", "prioritized", "alpha", "eps", "rng_device",
            "rng_state", "size", "pos", "priorities", "max_priority")  # fmt: skip
    return {"version": 1, **{k: state[k] for k in keep if k in state}, **rows}


@pytest.mark.parametrize("prioritized", [False, True])
@pytest.mark.parametrize("chunks", [8, 60])  # partly filled; wrapped
def test_old_checkpoints_are_converted(prioritized: bool, chunks: int) -> None:
    """A replay state of version 1 (a checkpoint of an earlier widerl) loads into the compact
    storage: the same transitions in the same slots, priorities and RNG, so it samples the
    same batches as the buffer it came from."""
    log: dict[bytes, tuple] = {}
    cols = collectors(2, 2, log)
    rb = ReplayBuffer(OBS, 1, 48, prioritized=prioritized, seed=5)  # a row for each
    kept = kept_rows(Intake(rb, None), stream(cols, chunks, seed=0))
    converted = ReplayBuffer(OBS, 1, 48, prioritized=prioritized, seed=0, reserve=24)
    converted.load_state_dict(as_v1(rb.state_dict()))
    assert (converted.size, converted.pos) == (rb.size, rb.pos)
    assert (converted.storage.next < 48).sum() > rb.size // 2  # most s' are pointers now
    for _ in range(3):
        a, b = rb.sample(32, beta=0.5), converted.sample(32, beta=0.5)
        for x, y in zip(a, b, strict=True):
            assert (x is None and y is None) or torch.equal(x, y)
    check_samples(converted, log, kept)


def test_humanoid_million_transitions_fit_in_1_5_gb() -> None:
    """1M Humanoid-v5 transitions (obs 348, act 17) in at most 1.5 GB as a run lays
    them out (build.py's compact pool), counting the prioritized tree and the learner's
    per-transition weight version (int32); with a next observation per slot it was 2.87 GB."""
    import widerl.run.memory as memory
    from widerl.config import resolve

    cap = 1_000_000
    cfg = resolve({"env": "Humanoid-v5", "buffer_size": cap, "prioritized": True,
                   "ofenet_units": 0})  # fmt: skip
    parts = {p.name: p.nbytes for p in memory.run_parts(cfg, 348, 17)}
    assert parts["replay"] == replay_nbytes(348, 17, cap, True, compact_reserve(cap))
    assert parts["replay"] + parts["weight versions"] <= 1.5e9
    # OFENet's split diverts 1 transition in 100, each leaving its predecessor a pool row.
    ofenet_cfg = resolve({"env": "Humanoid-v5", "prioritized": True, "ofenet_units": 32})
    ofenet = memory.run_parts(ofenet_cfg, 348, 17)
    pool = compact_reserve(cap) + cap // intake_mod.HOLDOUT_EVERY
    assert ofenet[0].name == "replay"
    assert ofenet[0].nbytes == replay_nbytes(348, 17, cap, True, pool)
    # What is allocated is what is counted: a buffer of 1/20 the size, built as a run's.
    small = 50_000
    rb = ReplayBuffer(348, 17, small, prioritized=True, reserve=compact_reserve(small))
    assert rb.nbytes() == replay_nbytes(348, 17, small, True, compact_reserve(small))


@pytest.mark.slow
def test_compiled_step_reads_start_and_size_without_recompiling() -> None:
    """The compiled learning step over a compact buffer whose live run of slots moves (the
    pool overflowed, so it does not start at slot 0) samples what the eager step samples, and
    more chunks (new size, new start) run the same graph."""
    from widerl.agents import make_agent
    from widerl.config import resolve
    from widerl.run.step import LearnStep

    def run(compiled: bool | str) -> list[torch.Tensor]:
        log: dict[bytes, tuple] = {}
        cols = collectors(2, 2, log)
        torch.manual_seed(0)
        cfg = resolve({"algo": "sac", "units": 16, "layers": 2})
        agent = make_agent(cfg, OBS, 1, torch.device("cpu"))
        rb = ReplayBuffer(OBS, 1, 48, seed=3, reserve=8)  # uniform: rows counted from start
        intake = Intake(rb, None)
        kept_rows(intake, stream(cols, 30, seed=0))
        step = LearnStep(rb, agent.features, agent, 16, compiled=compiled)
        idx = [step(0, 10)["idx"]]
        starts = {rb.storage.start}
        with torch.compiler.set_stance("fail_on_recompile" if compiled else "default"):
            for i in range(4):
                kept_rows(intake, stream(cols, 3, seed=10 + i))
                starts.add(rb.storage.start)
                idx.append(step(i + 1, 10)["idx"])
        assert len(starts) > 1
        return idx

    for a, b in zip(run(False), run("aot_eager"), strict=True):
        assert torch.equal(a, b)


def test_an_open_end_whose_transition_is_gone_stays_unlinked() -> None:
    """An env's chunk waits for its continuation while another env's transitions overwrite
    it (a stalled collector): when the continuation comes, the slot it would have linked
    holds another transition, whose next observation must stay its own."""
    log: dict[bytes, tuple] = {}
    b, a = collectors(2, 1, log)  # env 1's first episode does not end at its first step
    rb = ReplayBuffer(OBS, 1, 8, reserve=8)
    intake = Intake(rb, None)
    kept = kept_rows(intake, [a.collect(None, 1)])
    kept += kept_rows(intake, [b.collect(None, 1) for _ in range(12)])
    kept += kept_rows(intake, [a.collect(None, 1)])
    check_samples(rb, log, kept, draws=500)


@pytest.mark.slow
def test_a_run_with_an_old_replay_checkpoint_resumes_exactly(
    tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run folder whose checkpoint holds its replay in the old layout (an earlier widerl,
    --checkpoint-replay) resumes through the conversion to the same metrics as the run that
    was never stopped."""
    from test_reliability import resume, rows, signal_at_update, train

    from widerl.record.checkpoint import save_atomic

    assert train(tmp_path / "ref", "--checkpoint-replay") == 0
    out = tmp_path / "run"
    with monkeypatch.context() as m:
        signal_at_update(m, 37)
        assert train(out, "--checkpoint-replay") == 130
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert state["replay"]["version"] == 2
    state["replay"] = as_v1(state["replay"])
    save_atomic(state, out / "checkpoint.pt")
    assert resume(out) == 0
    assert rows(out) == rows(tmp_path / "ref")
