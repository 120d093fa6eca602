"""SFLAM-v0's round latency in CVPO's critics: which critic represents it, what a trained one sees.

Two measurements, each on one thread:

``fit``: offline regression of the one-step round latency (the cost at gamma 0) from 20,000 env
transitions, for each critic kind of :class:`edgegen.agents.cvpo.CVPOPolicy`: the whole-state MLP
(``net_arch`` (128, 128), the recipe's), the per-device sum (``entity_critic_arch``) and the Deep Set
(``entity_critic="set"``). Actions are a per-episode-block centre drawn uniformly in [-0.6, 0.6] per
dimension plus Gaussian noise of std 0.15, so the data spans rounds of a few seconds to tens of
seconds. Reported: the RMSE on the held-out fifth of the transitions, overall and on rounds under
6 s (near the 2.5 s limit, where the E-step works), and the mean error there.

``check MODEL``: a trained CVPO's target critics against the env, on 200 rounds of episodes
60000-60009 (no test or evaluation uses them): per round, 16 particles from the target actor, the
critics' pessimistic cost Q at each, and the true one-step latency of each (a deep copy of the env
stepped with the particle). Reported: the mean one-step cost, the critics' mean Q_c against the
stationary approximation ``c + gamma c_mean / (1 - gamma)``, the particles' spread of true latency
within a round, and the correlation and the regression slope of Q_c on the true latency within a
round (what lets the E-step's re-weighting lower the cost; at gamma 0.5 a slope of 1 is exact, since
a round's latency does not change later rounds). A critic that has gone flat around the policy
shows as a slope near 0; its correlation is then float round-off and means nothing.

    python benchmarks/sflam_cost_critic.py fit [--steps 4000] [--transitions 20000]
    python benchmarks/sflam_cost_critic.py check runs/.../model.zip
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch as th

import edgegen  # noqa: F401  (registers the ids)
from edgegen.agents.cvpo import CVPO, CVPOPolicy

RESULTS = Path(__file__).parent / "results" / "sflam_cost_critic.json"
CRITICS = {
    "mlp (128, 128)": {},
    "sum (32, 32)": {"entity_layout": (2, 3), "entity_critic_arch": (32, 32)},
    "set (32, 32)": {"entity_layout": (2, 3), "entity_critic_arch": (32, 32), "entity_critic": "set"},
    "set (64, 64)": {"entity_layout": (2, 3), "entity_critic_arch": (64, 64), "entity_critic": "set"},
}


def transitions(n: int, seed: int = 0) -> tuple[th.Tensor, th.Tensor, th.Tensor]:
    """``n`` (observation, action, round latency) triples of SFLAM-v0 (episodes from ``seed``)."""
    env = gym.make("edgegen/SFLAM-v0").unwrapped
    rng = np.random.default_rng(seed)
    obs_rows, act_rows, latency = [], [], []
    obs, _ = env.reset(seed=seed)
    centre = rng.uniform(-0.6, 0.6, size=env.action_space.shape)
    for t in range(n):
        if t % 20 == 0:
            centre = rng.uniform(-0.6, 0.6, size=env.action_space.shape)
        action = np.clip(centre + rng.normal(0.0, 0.15, centre.shape), -1, 1).astype(np.float32)
        next_obs, _, terminated, truncated, info = env.step(action)
        obs_rows.append(obs)
        act_rows.append(action)
        latency.append(info["costs"][0])
        obs = env.reset()[0] if terminated or truncated else next_obs
    return (
        th.tensor(np.array(obs_rows)),
        th.tensor(np.array(act_rows)),
        th.tensor(np.array(latency), dtype=th.float32),
    )


def fit(steps: int, n: int) -> dict:
    """Held-out RMSE of each critic kind's cost head on the one-step latency."""
    obs, act, latency = transitions(n)
    split = int(0.8 * n)
    env = gym.make("edgegen/SFLAM-v0")
    out = {
        "transitions": n,
        "steps": steps,
        "latency_quantiles_10_50_90": np.quantile(latency, [0.1, 0.5, 0.9]).tolist(),
    }
    for name, kwargs in CRITICS.items():
        th.manual_seed(0)
        critics = CVPOPolicy(env.observation_space, env.action_space, lambda _: 1e-3, **kwargs).critics
        opt = th.optim.Adam(critics.parameters(), lr=1e-3)
        gen = th.Generator().manual_seed(0)
        start = time.process_time()
        for _ in range(steps):
            idx = th.randint(0, split, (256,), generator=gen)
            loss = ((critics(obs[idx], act[idx])[1][0] - latency[idx]) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        with th.no_grad():
            err = (critics(obs[split:], act[split:])[1][0] - latency[split:]).numpy()
        near = latency[split:].numpy() < 6.0
        out[name] = {
            "rmse_s": float(np.sqrt(np.mean(err**2))),
            "rmse_under_6s": float(np.sqrt(np.mean(err[near] ** 2))),
            "bias_under_6s": float(err[near].mean()),
            "rounds_under_6s": int(near.sum()),
            "cpu_s": time.process_time() - start,
        }
        print(name, out[name], flush=True)
    return out


def check(model_path: str, rounds_per_episode: int = 20, episodes: int = 10, particles: int = 16) -> dict:
    """A trained CVPO's cost critic against the true latency of its own particles."""
    model = CVPO.load(model_path)
    policy, gamma = model.policy, model.config.gamma
    env = gym.make("edgegen/SFLAM-v0").unwrapped
    gen = th.Generator().manual_seed(0)
    q_mean, c_mean, c_spread, within, slope = [], [], [], [], []
    for episode in range(episodes):
        obs, _ = env.reset(seed=60_000 + episode)
        for _ in range(rounds_per_episode):
            o = th.tensor(obs[None], dtype=th.float32)
            with th.no_grad():
                mean, std = policy.actor_target(o)
                noise = th.randn((particles, *mean.shape), generator=gen)
                parts = (mean + std * noise).clamp(-1.0, 1.0)
                q_c = policy.pessimistic_cost(policy.critics_target.over_particles(o, parts)[1])[
                    0, :, 0
                ].numpy()
            true = np.array([copy.deepcopy(env).step(p[0].numpy())[4]["costs"][0] for p in parts])
            q_mean.append(q_c.mean())
            c_mean.append(true.mean())
            c_spread.append(true.std())
            within.append(np.corrcoef(q_c, true)[0, 1])
            slope.append(np.polyfit(true, q_c, 1)[0])
            obs = env.step(mean[0].numpy())[0]
    cost = float(np.mean(c_mean))
    out = {
        "model": model_path,
        "gamma": gamma,
        "threshold": model.thresholds.tolist(),
        "one_step_cost_s": cost,
        "critic_q_c": float(np.mean(q_mean)),
        "stationary_q_c": cost + gamma * cost / (1 - gamma),
        "latency_spread_within_round_s": float(np.mean(c_spread)),
        "within_round_correlation_median": float(np.nanmedian(within)),
        "within_round_slope_median": float(np.nanmedian(slope)),
        "across_round_correlation": float(np.corrcoef(q_mean, c_mean)[0, 1]),
    }
    print(json.dumps(out, indent=1))
    return out


def main() -> None:
    """CLI."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    p_fit = sub.add_parser("fit")
    p_fit.add_argument("--steps", type=int, default=4000)
    p_fit.add_argument("--transitions", type=int, default=20_000)
    p_check = sub.add_parser("check")
    p_check.add_argument("model")
    args = parser.parse_args()
    th.set_num_threads(1)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    record = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    if args.what == "fit":
        record["fit"] = fit(args.steps, args.transitions)
    else:
        record.setdefault("check", {})[args.model] = check(args.model)
    RESULTS.write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
