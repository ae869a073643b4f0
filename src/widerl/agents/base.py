"""What every algorithm shares: the critic ensemble and its targets, the TD loss, per-seed
random streams, acting, the (optionally compiled) update, checkpoints.

Shapes: K seeds, N critics per seed, batch B. A batch holds `obs [K, B, obs_dim]`,
`act [K, B, A]`, `rew, term [K, B]`, importance weights `[K, B]` or None. Metrics are `[K]`
tensors (one value per seed), detached, never read on the host here: the update queues
device work without waiting for it (on CUDA), and the caller reads metrics when it logs.
A single-seed caller may pass unbatched-by-seed tensors (`obs [B, obs_dim]`); they are
treated as K = 1 and metrics come back as scalars.

Every random number an update uses is drawn before it, from that seed's own generator
(`draw_noise`), so the update itself is a deterministic function of (parameters, batch,
noise) that torch.compile can trace in one graph, and no seed's draws depend on another's.
"""

from __future__ import annotations

import abc
import contextlib
import copy
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

import widerl.replay.generators as generators
from widerl.agents import td
from widerl.config import Config, ConfigError
from widerl.nets.actors_critics import CriticEnsemble
from widerl.nets.autodiff import Differentiable
from widerl.nets.bodies import make_body
from widerl.nets.critic_heads import elementwise_critic_loss, make_head
from widerl.nets.ensemble import ensemble_linears, reset_members, trained_names
from widerl.nets.feature_factory import make_features
from widerl.nets.features import FeatureLearner
from widerl.nets.optim import Adam, soft_update
from widerl.replay.buffer import Batch

Noise = dict[str, torch.Tensor]

__all__ = ["Agent", "Noise", "elementwise_critic_loss", "eval_mode"]


def seed_streams(seed: int) -> dict[str, int]:
    """The agent's independent random streams of one seed (numpy SeedSequence spawn):
    initial weights, the noise of updates, the noise of acting."""
    names = ("init", "update", "act")
    children = np.random.SeedSequence(seed).spawn(len(names))
    return {n: int(c.generate_state(1)[0]) for n, c in zip(names, children, strict=True)}


class Agent(nn.Module, abc.ABC):
    """Base of the algorithms: `act(obs, deterministic)` and `update(batch) -> metrics`."""

    metric_names: tuple[str, ...] = ()

    def __init__(
        self,
        cfg: Config,
        obs_dim: int,
        act_dim: int,
        device: torch.device | str,
        features: FeatureLearner | None = None,
        seeds: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        self.cfg, self.obs_dim, self.act_dim = cfg, obs_dim, act_dim
        self.device = torch.device(device)
        self.seeds = list(seeds) if seeds is not None else [cfg.seed]
        self.k = len(self.seeds)
        streams = [seed_streams(s) for s in self.seeds]
        self.features = (
            features if features is not None else make_features(cfg, obs_dim, act_dim, seeds=self.k)
        )
        self._init_seeds = [s["init"] for s in streams]
        self.critics = CriticEnsemble(
            self.k, cfg.critics, self.critic_body, self.features.sa_dim, make_head(cfg)
        )
        self._build_networks()
        if self.device.type != "meta":
            init = [torch.Generator().manual_seed(s) for s in self._init_seeds]
            self.features.reset_parameters(init)
            for net in self.trained_networks():
                reset_members(net, init)
        self.critics_target = copy.deepcopy(self.critics) if self.critic_targets else None
        self._build_targets()
        # --reward-scaling: each seed's divisor of the sampled rewards, set from the intake's
        # return statistics (collect/reward_scale.py); not in the checkpoint's modules (the
        # intake's statistics are, and set it again on resume).
        self.register_buffer("reward_scale", torch.ones(self.k), persistent=False)
        # No parameter requires grad outside a loss (autodiff.Differentiable), so that a
        # compiled step updates them in place and targets never enter a graph.
        self.requires_grad_(False)
        self.to(self.device)
        self.features.build_optimizer()
        gen = self.device if self.device.type != "meta" else "cpu"
        self.update_gens = [generators.device_generator(gen, s["update"]) for s in streams]
        self.act_gens = [generators.device_generator(gen, s["act"]) for s in streams]
        self.n_updates = 0
        self._submodules: tuple[nn.Module, ...] | None = None  # see `evaluating`
        # `policy` compiled, set by a run whose learning step is compiled on a CPU
        # (run/compiling.py, "Acting"); None: `act` runs `policy` eagerly.
        self.acting_graph: Callable[..., torch.Tensor | None] | None = None
        self.critic_params = Differentiable(self, self._names("critics."))
        self.critic_opt = self.adam(self.critic_params.params)
        self._build_optimizers()
        self._critic_target_params: list[torch.Tensor] = []
        self._critic_stats: tuple[list[torch.Tensor], list[torch.Tensor]] = ([], [])
        if self.critics_target is not None:
            self._critic_target_params = matching(
                self.critics_target, self.critic_params, "critics."
            )
            self._critic_stats = float_buffers(self.critics), float_buffers(self.critics_target)

    # --- construction, per algorithm --------------------------------------------------------
    critic_targets = True  # whether the critics have target copies (CrossQ has none)
    # Whether the actor steps only every --policy-delay updates (TD3, CrossQ); SAC steps it
    # every update and ignores the flag.
    delays_actor = False

    def body(self, members: int, in_dim: int, units: int, layers: int) -> nn.Module:
        c = self.cfg
        return self.projected(make_body(
            c.arch, members, in_dim, units, layers,
            activation=c.activation, batchnorm=c.batchnorm,
        ))  # fmt: skip

    def projected(self, body: nn.Module) -> nn.Module:
        """With --weight-projection, every Linear of `body` keeps unit-norm weight vectors
        (projected at (re)initialisation and after each optimizer step, nets/optim.py)."""
        if self.cfg.weight_projection:
            for linear in ensemble_linears(body):
                linear.unit_norm = True
        return body

    def critic_body(self, members: int, in_dim: int) -> nn.Module:
        """The critics' body: --units x --layers."""
        return self.body(members, in_dim, self.cfg.units, self.cfg.layers)

    def actor_body(self, members: int, in_dim: int) -> nn.Module:
        """The policy's body: --actor-units x --actor-layers (0: the critics' values)."""
        c = self.cfg
        return self.body(members, in_dim, c.actor_units or c.units, c.actor_layers or c.layers)

    def adam(self, params: Sequence[torch.Tensor]) -> Adam:
        """The optimizer of actor and critics: Adam with --adam-beta1, AdamW's decoupled decay
        with --weight-decay > 0 (SimBa, BRO), and the unit-norm projection of the weights
        that carry it (--arch simbav2, --weight-projection; nets/optim.py)."""
        c = self.cfg
        unit_norm = {id(m.weight) for m in ensemble_linears(self) if m.unit_norm}
        return Adam(
            params, c.lr, betas=(c.adam_beta1, 0.999), weight_decay=c.weight_decay,
            projected=[id(p) in unit_norm for p in params],
        )  # fmt: skip

    @abc.abstractmethod
    def _build_networks(self) -> None:
        """Create the actor (and anything else trained) before initialisation."""

    def _build_targets(self) -> None:
        """Target copies besides the critics' (TD3's actor target)."""

    @abc.abstractmethod
    def _build_optimizers(self) -> None:
        """Create the remaining optimizers once parameters live on the device."""

    @abc.abstractmethod
    def optimizers(self) -> dict[str, Adam]:
        """Every optimizer of the agent by name (checkpointed with it)."""

    def trained_networks(self) -> list[nn.Module]:
        """The networks initialised from the seeds' generators, in initialisation order."""
        return [self.critics, self.actor]

    def _names(self, prefix: str) -> list[str]:
        """The trained parameters under `prefix`."""
        return [n for n in trained_names(self) if n.startswith(prefix)]

    def trained_parameters(self) -> list[torch.Tensor]:
        """Every tensor an optimizer of the agent (or of its features) trains."""
        return [p for opt in self.all_optimizers().values() for p in opt.params]

    # --- reward scaling (SimbaV2) ---------------------------------------------------------------
    @torch.no_grad()
    def set_reward_scale(self, returns: Sequence[Any]) -> None:
        """Each seed's divisor from its `ReturnScale` (None: rewards as they are)."""
        if self.cfg.reward_scaling:
            scales = [1.0 if r is None else r.scale() for r in returns]
            self.reward_scale.copy_(torch.tensor(scales, dtype=self.reward_scale.dtype))

    def scaled(self, batch: Batch) -> Batch:
        """The batch `[K, B, ...]` with its rewards divided by each seed's reward scale (with
        --reward-scaling; the batch as it is otherwise)."""
        if not self.cfg.reward_scaling:
            return batch
        return batch._replace(rew=batch.rew / self.reward_scale.unsqueeze(-1))

    # --- noise ------------------------------------------------------------------------------
    def _normal(self, gens: list[torch.Generator], shape: tuple[int, ...]) -> torch.Tensor:
        """Standard normal noise `[K, *shape]`, seed k's from its own generator."""
        draws = [torch.randn(shape, generator=g, device=g.device) for g in gens]
        return draws[0].unsqueeze(0) if len(draws) == 1 else torch.stack(draws)

    @abc.abstractmethod
    def draw_noise(self, batch_size: int, gens: list[torch.Generator] | None = None) -> Noise:
        """Every random number one update needs, `[K, B, ...]` per name, from `gens` (one
        per seed; default: the agent's update streams)."""

    # --- the critics (the TD machinery itself: agents/td.py) ---------------------------------
    def critic_loss(
        self, batch: Batch, z_sa: torch.Tensor, target: torch.Tensor
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """J_Q on the critics' outputs for z_sa (`td.critic_loss`)."""
        return td.critic_loss(self.critics.head, batch, self.critics.outputs(z_sa), target)

    def critic_step(
        self, batch: Batch, z_s: torch.Tensor, target: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """One Adam step of all critics towards the same target."""
        z_sa = self.features.state_action(z_s, batch.act)
        grads, (loss, q_mean, td_abs) = self.critic_params.grad(
            self.critic_loss, batch, z_sa, target
        )
        self.critic_opt.step(grads)
        return {"critic_loss": loss, "q_mean": q_mean, "td_abs": td_abs}

    def update_critic_targets(self) -> None:
        """theta' <- tau theta + (1 - tau) theta'; BatchNorm running statistics are copied,
        as Stable-Baselines3 does, so that a target in eval mode sees the online statistics."""
        if self.critics_target is None:
            return
        soft_update(self._critic_target_params, self.critic_params.params, self.cfg.tau)
        with torch.no_grad():
            for online, target in zip(*self._critic_stats, strict=True):
                target.copy_(online)

    @abc.abstractmethod
    def td_target(self, batch: Batch, z_s_next: torch.Tensor, noise: Noise) -> torch.Tensor:
        """r + gamma * (1 - terminated) * V(s') without gradients, in the critic head's form
        (`[K, B]`; target probabilities `[K, B, atoms]` for c51), see `bootstrap`."""

    @torch.no_grad()
    def current_td_target(self, batch: Batch, seed: int | None = None) -> torch.Tensor:
        """The TD target with the agent's current settings, for callers outside the update
        (loss landscapes): with `seed`, its noise comes from generators seeded with it, and
        the agent's own random streams are left untouched."""
        batch, single = by_seed(batch)
        batch = self.scaled(batch)
        gens = None
        if seed is not None:
            gens = [generators.device_generator(g.device, seed + i)
                    for i, g in enumerate(self.update_gens)]  # fmt: skip
        noise = self.draw_noise(batch.obs.shape[1], gens)
        target = self.td_target(batch, self.features.state(batch.next_obs), noise)
        return target[0] if single else target

    @torch.no_grad()
    def td_abs(self, batch: Batch) -> torch.Tensor:
        """|TD error| per transition, max over the critics, with the agent's current settings
        and every network in eval mode (BatchNorm on its running statistics): what an Ape-X
        collector uses as initial priority, and what a loss landscape holds fixed."""
        batch, single = by_seed(batch)
        batch = self.scaled(batch)
        with self.evaluating():
            noise = self.draw_noise(batch.obs.shape[1])
            target = self.td_target(batch, self.features.state(batch.next_obs), noise)
            z_sa = self.features.state_action(self.features.state(batch.obs), batch.act)
            q = self.critics(z_sa)
        td = (q - self.critics.head.expected(target).unsqueeze(1)).abs().amax(1)
        return td[0] if single else td

    # --- what acts elsewhere (Ray collectors) -------------------------------------------------
    def acting_state(self, with_critics: bool = False) -> dict[str, torch.Tensor]:
        """The tensors a copy of this agent needs to act (keys as in `state_dict`): the actor
        and the feature learner's acting copy; `with_critics` adds what `td_abs` reads (the
        critics and the TD target's networks), for Ape-X's actor-side initial priorities."""
        parts: list[tuple[str, nn.Module | dict[str, torch.Tensor]]] = [
            ("actor.", self.actor),
            ("features.", self.features.acting_state()),
        ]
        if with_critics:
            parts.append(("critics.", self.critics))
            if self.critics_target is not None:
                parts.append(("critics_target.", self.critics_target))
            parts += self._target_state()
        state: dict[str, torch.Tensor] = {}
        for prefix, part in parts:
            items = part.state_dict() if isinstance(part, nn.Module) else part
            state.update({prefix + k: v for k, v in items.items()})
        if with_critics and self.cfg.reward_scaling:  # the TD target's reward divisor
            state["reward_scale"] = self.reward_scale
        return state

    def _target_state(self) -> list[tuple[str, nn.Module | dict[str, torch.Tensor]]]:
        """What else a TD target reads (SAC: the temperature; TD3: the actor's target)."""
        return []

    # --- acting -----------------------------------------------------------------------------
    @torch.no_grad()
    def act(
        self,
        obs: torch.Tensor,
        deterministic: bool = False,
        noise_scale: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Actions in [-1, 1] for observations `[K, n, obs_dim]` (or `[n, obs_dim]` with one
        seed), every network in eval mode (BatchNorm on its running statistics).
        `noise_scale` `[K, n, 1]` (or `[n, 1]`): each env's exploration std where the agent
        explores with added noise (TD3 with --expl-noise-max); None: the configured one.
        The exploration noise is drawn here, from each seed's acting stream; `policy` maps
        it to actions, eagerly or as `acting_graph`."""
        single = obs.dim() == 2
        if single:
            obs = obs.unsqueeze(0)
            noise_scale = None if noise_scale is None else noise_scale.unsqueeze(0)
        shape = (obs.shape[1], self.act_dim)
        noise = None if deterministic else self._normal(self.act_gens, shape)
        a = None if self.acting_graph is None else self.acting_graph(obs, noise, noise_scale)
        if a is None:  # eager (or the compiled graph refused: run/compiling.py, "Acting")
            with self.evaluating():
                a = self.policy(obs, noise, noise_scale)
        return a[0] if single else a

    def policy(
        self, obs: torch.Tensor, noise: torch.Tensor | None, noise_scale: torch.Tensor | None
    ) -> torch.Tensor:
        """Actions for observations `[K, n, obs_dim]` and standard normal exploration noise
        `[K, n, act_dim]` (None: the deterministic policy), networks as they are (`act` puts
        them in eval mode): what `act` runs, and what a run whose learning step is compiled
        compiles for acting (run/compiling.py, "Acting")."""
        return self._act(self.features.state(obs), noise, noise_scale)

    def evaluating(self) -> contextlib.AbstractContextManager[nn.Module]:
        """`eval_mode` of the whole agent over a list of its modules built once (no network
        is replaced after __init__): acting, priorities and probes run it per call."""
        if self._submodules is None:
            self._submodules = tuple(self.modules())
        return eval_mode(self, self._submodules)

    @abc.abstractmethod
    def _act(
        self, z_s: torch.Tensor, noise: torch.Tensor | None, noise_scale: torch.Tensor | None
    ) -> torch.Tensor:
        """Policy actions from state features and standard normal noise (None: deterministic;
        `noise_scale`: see `act`)."""

    # --- learning ---------------------------------------------------------------------------
    def actor_step_due(self, n: int | None = None) -> bool:
        """Whether the update after `n` earlier ones (default: the next, `n_updates`) also
        steps the actor; a host-side count. With `delays_actor`, every policy_delay-th update
        (TD3's delayed policy updates, Sec. 5.2: the actor and the targets move together)."""
        if not self.delays_actor:
            return True
        return ((self.n_updates if n is None else n) + 1) % self.cfg.policy_delay == 0

    def update(self, batch: Batch) -> dict[str, torch.Tensor]:
        """One update on a given batch: noise drawn, `_update` run, counter advanced. (The
        trainer runs the whole learning step, sampling included: run/step.py's LearnStep.)"""
        batch, single = by_seed(batch)
        batch = self.scaled(batch)
        noise = self.draw_noise(batch.obs.shape[1])
        with torch.no_grad():
            metrics = self._update(batch, noise, self.actor_step_due())
        self.n_updates += 1
        return {k: v[0] for k, v in metrics.items()} if single else metrics

    @abc.abstractmethod
    def _update(self, batch: Batch, noise: Noise, actor_step: bool) -> dict[str, torch.Tensor]:
        """The learning step itself: critics, actor, temperature, targets."""

    # --- resets (BRO) ------------------------------------------------------------------------
    def reset_generators(self) -> list[torch.Generator]:
        """One generator per seed for a reset at the current update count, derived from the
        seed's initialisation stream and that count: a resumed run's reset draws what the
        uninterrupted run's would have."""
        return [
            torch.Generator().manual_seed(
                int(np.random.SeedSequence([s, self.n_updates]).generate_state(1)[0])
            )
            for s in self._init_seeds
        ]

    @torch.no_grad()
    def reset_networks(self, generators: Sequence[torch.Generator] | None = None) -> None:
        """A full reset as BRO's (Nauman et al. 2024, Sec. 3, "resets"; after Nikishin et al.
        2022): every network the agent trains is drawn anew (seed k's from generators[k],
        default `reset_generators()`), norm layers and their statistics start afresh, targets
        equal the new networks, every optimizer forgets its moments and step count, and SAC's
        temperature returns to --alpha-init. Kept: the replay (the trainer's), the update
        counter and the observation statistics of --obs-norm (a property of the data, not a
        learned weight). A feature learner's networks (OFENet) are reset too, without a new
        pre-training. Everything changes in place, so a compiled step keeps working."""
        gens = list(generators) if generators is not None else self.reset_generators()
        if len(gens) != self.k:
            raise ValueError(f"reset needs one generator per seed ({self.k}), got {len(gens)}")
        self.features.reset_parameters(gens)
        for net in self.trained_networks():
            reset_members(net, gens)
        if self.critics_target is not None:
            self.critics_target.load_state_dict(self.critics.state_dict())
        self._reset_extra()
        for opt in self.all_optimizers().values():
            opt.reset()

    def _reset_extra(self) -> None:
        """What else a reset returns to its initial state (TD3's actor target, SAC's alpha)."""

    # --- checkpointing ----------------------------------------------------------------------
    def all_optimizers(self) -> dict[str, Adam]:
        """The agent's optimizers and those of its features (OFENet's own Adam)."""
        return {**self.optimizers(), **self.features.optimizers()}

    def _extra_state(self) -> dict[str, torch.Tensor]:
        """Training state outside modules and optimizers (TD3: the last actor loss)."""
        return {}

    def _load_extra_state(self, state: dict[str, torch.Tensor]) -> None:
        """Restore `_extra_state`."""

    def checkpoint_state(self) -> dict[str, Any]:
        """Everything trained: networks, targets, features (OFENet and its target copy),
        BatchNorm statistics, optimizers, the update counter and the random streams."""
        return {
            "modules": self.state_dict(),
            "optimizers": {k: o.state_dict() for k, o in self.all_optimizers().items()},
            "n_updates": self.n_updates,
            "extra": self._extra_state(),
            "generators": {
                "update": [generators.generator_state(g) for g in self.update_gens],
                "act": [generators.generator_state(g) for g in self.act_gens],
            },
        }

    def load_checkpoint_state(self, state: dict[str, Any], where: str = "the checkpoint") -> None:
        """Restore `checkpoint_state()`; ConfigError (one line, naming the first tensor that
        differs) when it was written by networks other than these."""
        check_fits(self.state_dict(), state["modules"], where)
        missing = [k for k in self.all_optimizers() if k not in state["optimizers"]]
        if missing:
            raise ConfigError(
                f"{where} does not fit its config.json: it has no state for the {missing[0]} "
                "optimizer; the config and the checkpoint do not belong together"
            )
        self.load_state_dict(state["modules"])
        for k, opt in self.all_optimizers().items():
            opt.load_state_dict(state["optimizers"][k])
        self.n_updates = int(state["n_updates"])
        self._load_extra_state(state.get("extra", {}))
        gens = state.get("generators")
        if gens is not None:
            # Saved on another device type, a state seeds these generators (generators.py).
            for g, s in zip(
                self.update_gens + self.act_gens, gens["update"] + gens["act"], strict=True
            ):
                generators.restore_generator(g, s)


def check_fits(expected: dict[str, torch.Tensor], stored: dict[str, Any], where: str) -> None:
    """ConfigError unless `stored` has exactly the tensors of `expected`, with their shapes:
    the checkpoint `where` was written by a run with other settings than its config.json."""
    head = f"{where} does not fit its config.json"
    tail = "the config and the checkpoint do not belong together"
    for name, tensor in expected.items():
        want = tuple(tensor.shape)
        if name not in stored:
            raise ConfigError(
                f"{head}: tensor {name} {want} of the networks config.json describes is not in "
                f"the checkpoint; {tail}"
            )
        have = tuple(getattr(stored[name], "shape", ()))
        if have != want:
            raise ConfigError(
                f"{head}: tensor {name} has shape {have} in the checkpoint but {want} in the "
                f"networks config.json describes; {tail}"
            )
    extra = [k for k in stored if k not in expected]
    if extra:
        more = f" and {len(extra) - 1} more" if len(extra) > 1 else ""
        raise ConfigError(
            f"{head}: the checkpoint holds tensor {extra[0]}{more}, which the networks "
            f"config.json describes do not have; {tail}"
        )


def matching(target: nn.Module, online: Differentiable, prefix: str) -> list[torch.Tensor]:
    """The target copy's tensors that correspond to `online`'s trained parameters."""
    named = dict(target.named_parameters())
    return [named[n.removeprefix(prefix)] for n in online.names]


def float_buffers(module: nn.Module) -> list[torch.Tensor]:
    return [b for b in module.buffers() if b.is_floating_point()]


def by_seed(batch: Batch) -> tuple[Batch, bool]:
    """A single-seed batch (`obs [B, obs_dim]`) as K = 1."""
    if batch.obs.dim() == 3:
        return batch, False
    weight = None if batch.weight is None else batch.weight.unsqueeze(0)
    discount = None if batch.discount is None else batch.discount.unsqueeze(0)
    seq = None if batch.seq is None else type(batch.seq)(*(t.unsqueeze(0) for t in batch.seq))
    return (
        Batch(
            batch.obs.unsqueeze(0),
            batch.act.unsqueeze(0),
            batch.rew.unsqueeze(0),
            batch.next_obs.unsqueeze(0),
            batch.term.unsqueeze(0),
            weight,
            batch.idx,
            discount,
            seq,
        ),
        True,
    )


@contextlib.contextmanager
def eval_mode(module: nn.Module, modules: Sequence[nn.Module] | None = None) -> Iterator[nn.Module]:
    """Every submodule in eval mode (BatchNorm uses its running statistics, so the output for
    a sample does not depend on the rest of the batch and running statistics stay as they
    are); each module's own flag is restored. `modules`: `module.modules()`, when the caller
    keeps that list."""
    # A paper-S agent spent 1.9 of the 2.8 ms it needed to act on one observation in
    # `module.eval()`'s recursive walk and nn.Module.__setattr__'s checks (about 2 us per
    # module, for a plain bool attribute). So a caller acting often passes the list of
    # modules, and outside a compiled graph the flags are written straight into each module's
    # instance dict (where `training` lives; what object.__setattr__ would do, without a call
    # per module: 42 modules of a TD3 agent took 30 us a call that way, about 1/5 of acting).
    mods = module.modules() if modules is None else modules
    if torch.compiler.is_compiling():  # what torch.compile traces (CrossQ's update)
        modes = [(m, m.training) for m in mods]
        for m, _ in modes:
            _set_training_traced(m, False)
        try:
            yield module
        finally:
            for m, training in modes:
                _set_training_traced(m, training)
        return
    dicts = [m.__dict__ for m in mods]
    flags = [d["training"] for d in dicts]
    for d in dicts:
        d["training"] = False
    try:
        yield module
    finally:
        for d, training in zip(dicts, flags, strict=True):
            d["training"] = training


def _set_training_traced(m: nn.Module, mode: bool) -> None:
    m.training = mode  # what torch.compile traces (CrossQ's update runs eval_mode inside)
