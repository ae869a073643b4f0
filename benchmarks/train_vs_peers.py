"""A whole `widerl train` run with its default flags against sbx and Stable-Baselines3 running
the same protocol: whole-process wall time (imports, env creation, compilation, warm-up,
evaluations all included) and the final evaluation return of each, runs alternated.

The protocol (issue 24's table, every side alike): `--warmup` random env steps, then
`--steps` gradient updates, one per env step, batch 256; `--eval-episodes` deterministic
episodes on a separate env after the warm-up, every `--eval-every` updates and after the last;
one CPU thread each (torch.set_num_threads(1); JAX's client created on one core). widerl gets
only the protocol's flags (`--algo --env --steps --warmup --eval-every --eval-episodes --seed
--threads 1 --no-progress`, plus `--arch simba --units --layers` for SimBa): everything else is
its default, `--compile auto` included. The peers get widerl's resolved hyperparameters for the
same algorithm (learning rate, Adam beta1, tau, policy delay, target noise, exploration noise,
initial alpha, widths), so the comparison is of speed at equal learning.

Recipes: sac, td3 (peers sbx and sb3), crossq (sbx; SB3 has none), simba (SAC on SimBa
networks, sbx's SimbaPolicy). Each round runs every (recipe, side) once, one process at a time,
in an order that reverses from round to round; the median over rounds of each side's wall time
and the ratio widerl / peer per round are reported (`--json` keeps every run).

    python benchmarks/train_vs_peers.py --recipes td3,sac,crossq,simba --rounds 3 \
        --warmup 2000 --steps 6000 --eval-every 3000 --eval-episodes 2 --json out.json
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from curves import peer_returns  # noqa: E402

EVAL_SEED = 10_000
PEERS = {"sac": ("sbx", "sb3"), "td3": ("sbx", "sb3"), "crossq": ("sbx",), "simba": ("sbx",)}


def widerl_args(recipe: str, args: argparse.Namespace) -> list[str]:
    """The protocol's flags for `widerl train`, nothing else."""
    algo = "sac" if recipe == "simba" else recipe
    cmd = ["--algo", algo, "--env", args.env, "--seed", str(args.seed)]
    cmd += ["--steps", str(args.steps), "--warmup", str(args.warmup)]
    cmd += ["--eval-every", str(args.eval_every), "--eval-episodes", str(args.eval_episodes)]
    cmd += ["--threads", "1", "--no-progress"]
    if recipe == "simba":
        cmd += ["--arch", "simba", "--units", str(args.simba_units), "--layers", "2"]
    return cmd


def run_side(side: str, recipe: str, args: argparse.Namespace, out: Path) -> dict[str, Any]:
    """One whole process, timed from its start to its exit."""
    if side in args.widerls:
        cmd = [args.widerls[side], "train", "--out", str(out), *widerl_args(recipe, args)]
    else:
        flags = [f"--{k.replace('_', '-')}={v}" for k, v in protocol(args).items()]
        cmd = [sys.executable, __file__, "--peer-run", side, "--recipes", recipe]
        cmd += ["--out", str(out), *flags]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode:
        raise SystemExit(f"{side} {recipe} failed:\n{proc.stderr[-3000:]}")
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    evals = [r for r in rows if r.get("eval_return_mean")]
    log = out / "run.log"  # widerl's own account of the run (the --compile decision)
    return {
        "side": side,
        "recipe": recipe,
        "wall_s": round(wall, 2),
        "final_return": round(float(evals[-1]["eval_return_mean"]), 1),
        "grad_step": int(evals[-1]["grad_step"]),
        "evals": len(evals),
        "run_log": log.read_text().strip().splitlines() if log.exists() else None,
    }


def protocol(args: argparse.Namespace) -> dict[str, Any]:
    keys = ("env", "seed", "steps", "warmup", "eval_every", "eval_episodes", "simba_units")
    return {k: getattr(args, k) for k in keys}


# --- a peer's run (in its own process: --peer-run) -----------------------------------------
def peer_run(args: argparse.Namespace) -> None:
    import gymnasium as gym
    import numpy as np

    recipe, side = args.recipes, args.peer_run
    algo = "sac" if recipe == "simba" else recipe
    import torch

    torch.set_num_threads(1)
    if side == "sbx":
        from widerl.bench.peers import start_jax

        start_jax(1, "cpu")
        import sbx as lib
    else:
        import stable_baselines3 as lib
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.noise import NormalActionNoise

    import widerl

    # widerl's own values for this algorithm: the peers learn as widerl's default does.
    over = {"algo": algo, "env": args.env}
    if recipe == "simba":
        over |= {"arch": "simba", "units": args.simba_units, "layers": 2}
    c = widerl.resolve(over)
    env = gym.make(args.env)
    act_dim = env.action_space.shape[0]
    kw: dict[str, Any] = {
        "learning_starts": args.warmup, "batch_size": c.batch_size, "gamma": c.gamma,
        "buffer_size": min(c.buffer_size, args.warmup + args.steps + 1),
        "learning_rate": c.lr, "train_freq": 1, "gradient_steps": 1, "seed": args.seed,
        "device": "cpu", "verbose": 0,
    }  # fmt: skip
    net = [c.units] * c.layers
    policy = "SimbaPolicy" if recipe == "simba" else "MlpPolicy"
    pk: dict[str, Any] = {"net_arch": net}
    if algo == "td3":
        noise = NormalActionNoise(np.zeros(act_dim), c.expl_noise * np.ones(act_dim))
        kw |= {"tau": c.tau, "policy_delay": c.policy_delay, "action_noise": noise}
        kw |= {"target_policy_noise": c.policy_noise, "target_noise_clip": c.noise_clip}
    elif algo == "sac":
        kw |= {"tau": c.tau, "ent_coef": f"auto_{c.alpha_init}"}
    else:  # CrossQ: no target networks; Adam beta1 and the actor's delay as widerl's
        kw |= {"policy_delay": c.policy_delay, "ent_coef": f"auto_{c.alpha_init}"}
        pk |= {"net_arch": {"pi": net, "qf": net}, "renorm_warmup_steps": c.renorm_warmup}
        pk |= {"optimizer_kwargs": {"b1": c.adam_beta1}}
    model = getattr(lib, algo.upper() if algo != "crossq" else "CrossQ")(
        policy, env, policy_kwargs=pk, **kw
    )
    eval_env = gym.make(args.env)
    rows: list[dict[str, Any]] = []
    t0 = time.perf_counter()

    def evaluate(grad_step: int, env_step: int) -> None:
        returns = peer_returns(model, eval_env, args.eval_episodes, EVAL_SEED)
        rows.append({"grad_step": grad_step, "env_step": env_step,
                     "wall_time": round(time.perf_counter() - t0, 3),
                     "eval_return_mean": float(np.mean(returns))})  # fmt: skip

    class EvalEvery(BaseCallback):
        def _on_step(self) -> bool:
            if self.num_timesteps < args.warmup:  # the first evaluation after the warm-up
                return True
            n = self.model._n_updates
            if n % args.eval_every == 0 and (not rows or rows[-1]["grad_step"] != n):
                evaluate(n, self.num_timesteps)
            return True

    # SB3 and sbx update after every step past learning_starts: `steps` updates.
    model.learn(total_timesteps=args.warmup + args.steps, callback=EvalEvery())
    if rows[-1]["grad_step"] != model._n_updates:
        evaluate(model._n_updates, model.num_timesteps)
    args.out.mkdir(parents=True, exist_ok=True)
    with (args.out / "metrics.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def summarise(runs: list[dict[str, Any]], recipes: list[str], widerls: list[str]
              ) -> dict[str, Any]:  # fmt: skip
    """Per recipe: each side's median wall time and final returns, and the median over rounds
    of each widerl variant's wall time over each peer's (and over the first variant's)."""
    out: dict[str, Any] = {}
    for recipe in recipes:
        mine = [r for r in runs if r["recipe"] == recipe]
        sides = sorted({r["side"] for r in mine}, key=lambda s: (s not in widerls, s))
        rounds = max(r["round"] for r in mine) + 1
        res: dict[str, Any] = {}
        for side in sides:
            theirs = [r for r in mine if r["side"] == side]
            res[side] = {"median_wall_s": statistics.median(r["wall_s"] for r in theirs),
                         "final_returns": [r["final_return"] for r in theirs]}  # fmt: skip
        for w in widerls:
            for other in [s for s in sides if s != w and (s not in widerls or s == widerls[0])]:
                ratios = []
                for k in range(rounds):
                    a = [r["wall_s"] for r in mine if r["round"] == k and r["side"] == w]
                    b = [r["wall_s"] for r in mine if r["round"] == k and r["side"] == other]
                    if a and b:
                        ratios.append(a[0] / b[0])
                if ratios:
                    res[f"{w}/{other}"] = {"median": round(statistics.median(ratios), 3),
                                           "rounds": [round(x, 3) for x in ratios]}  # fmt: skip
        out[recipe] = res
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--widerl", action="append", default=None, metavar="[NAME=]EXE",
        help="a widerl executable to time, repeatable (e.g. base=/old/widerl new=.venv/bin/"
        "widerl: both alternate with the peers); default this environment's widerl",
    )  # fmt: skip
    p.add_argument("--recipes", default="td3,sac,crossq,simba")
    p.add_argument("--peers", default="sbx,sb3", help="which peers to run, of sbx and sb3")
    p.add_argument("--env", default="HalfCheetah-v5")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=25_000)
    p.add_argument("--warmup", type=int, default=5_000)
    p.add_argument("--eval-every", type=int, default=2_500)
    p.add_argument("--eval-episodes", type=int, default=5)
    p.add_argument("--simba-units", type=int, default=128, help="SimBa's width (CPU-sized)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--json", type=Path, default=None, help="also write every run here")
    p.add_argument("--peer-run", choices=["sbx", "sb3"], default=None, help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.peer_run:
        peer_run(args)
        return
    given = args.widerl or [str(Path(sys.executable).parent / "widerl")]
    args.widerls = dict(w.split("=", 1) if "=" in w else ("widerl", w) for w in given)
    recipes = args.recipes.split(",")
    wanted = set(args.peers.split(",")) - {""}
    jobs = [(r, s) for r in recipes for s in (*args.widerls, *PEERS[r])
            if s in args.widerls or s in wanted]  # fmt: skip
    runs: list[dict[str, Any]] = []
    tmp = Path(tempfile.mkdtemp(prefix="train_vs_peers-"))
    try:
        for k in range(args.rounds):
            for recipe, side in jobs if k % 2 == 0 else list(reversed(jobs)):
                out = tmp / f"{recipe}-{side}-{k}"
                res = run_side(side, recipe, args, out) | {"round": k}
                runs.append(res)
                print(json.dumps(res), flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    summary = {"protocol": protocol(args), "load_after": os.getloadavg()[0],
               "summary": summarise(runs, recipes, list(args.widerls))}  # fmt: skip
    print(json.dumps(summary["summary"], indent=1))
    if args.json:
        args.json.write_text(json.dumps({**summary, "runs": runs}, indent=1))


if __name__ == "__main__":
    main()
