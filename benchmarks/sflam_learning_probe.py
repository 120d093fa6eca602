"""Why SFLAM-v0's agents stop at 1.3-1.5x the oracle: a compact PPO on the env's own round model.

SFLAM-v0's recipes train with ``gamma = 0`` (a round's decisions do not change later rounds), so
learning it is a contextual bandit: observe a round, act, read its objective and latency. This script
runs a small clipped-PPO learner on rounds drawn from the env (``SFLAMEnv.reset``'s episodes,
evaluated with the env's own ``round_outcome_indexed``) with the shipped agents' shape (one actor MLP
shared by the devices, a Deep Set context of the round, a Gaussian at log std -1.5, 512 samples per
update, 10 epochs of 128-sample minibatches, a gradient multiplier on the round latency) and changes
one thing at a time, so that each of three explanations can be tested alone, fast:

- ``--credit``: ``team`` gives every action value the round's advantage (what the agents do);
  ``local`` gives each device its own terms: its energy, its quantization, and its latency's excess
  over the round's other devices (``T - max of the others``: the only part of ``T`` it moves alone);
  ``hybrid`` gives the bit-width and power of a device its own terms and the bandwidth weights (which
  couple the devices through the shares) the round's advantage.
- ``--credit critic`` / ``critic-max``: not PPO but a deterministic actor trained through a learnt
  critic's action gradient (DDPG at gamma 0, the same 512 rounds per update, exploration noise 0.2),
  the critic a two-stage Deep Set of the round predicting the logarithms of the objective and of the
  round latency (``critic``) or of every device's latency, the round's being their max
  (``critic-max``); its multiplier follows the deterministic policy's played rounds.
- ``--credit critic-ens``: the critic learner with the stabilisers an off-policy Lagrangian agent
  would ship (fifteenth session): an ensemble of per-device set critics (``--ensemble``, 5), the actor
  on their pessimistic estimate (mean + ``--pessimism`` standard deviations of each log), smaller and
  fewer actor steps, the multiplier fed by the deterministic policy on fresh rounds counted in the
  samples. ``critic-ens-estep``: the same critics, the actor improved by CVPO's E- and M-step
  (particles re-weighted under a KL bound) instead of the critics' gradient. ``--round-critic``:
  critics of the round latency alone instead of every device's. ``critic-ens-bits`` /
  ``critic-ens-joint``: bit-widths as five logits per device, trained to the critics' choice per
  device / for the round's devices jointly (docs/experiments.md).
- ``--log-actions RATE``: the PPO learners' bandwidth weights and powers on a log scale
  (``u = min(1, exp(RATE a) / 2)``), in case the linear scale wastes the Gaussian's resolution on
  large powers (sixteenth session: it does not help, docs/experiments.md).
- ``--lambda-lr 0 --lambda-init L``: the latency multiplier held at ``L`` (the CMDP oracle's is ~1.0).
- ``--samples``: the training budget (the targets' 100k, or more).

Every 20 updates (and at the end) the deterministic policy (PPO's Gaussian mean, the critic
learners' actor output) plays the tuning block's 20 evaluation episodes (10000-10019); each line gives
its mean round latency T, energy E, quantization bound Q and objective against the CMDP oracle's on
the same rounds.

    python benchmarks/sflam_learning_probe.py --credit team local hybrid --seed 0 --samples 100000
    python benchmarks/sflam_learning_probe.py --credit team --lambda-lr 0 --lambda-init 1.0
    python benchmarks/sflam_learning_probe.py --credit team --log-actions 2  # or 3
    python benchmarks/sflam_learning_probe.py --credit critic-max critic
    python benchmarks/sflam_learning_probe.py --credit critic-ens --seed S  # S = 0, 1, 2, 3, 4
    python benchmarks/sflam_learning_probe.py --credit critic-ens-estep
    python benchmarks/sflam_learning_probe.py --credit critic-ens --round-critic
    python benchmarks/sflam_learning_probe.py --credit critic-ens --ensemble 1
    python benchmarks/sflam_learning_probe.py --credit critic-ens-bits
    python benchmarks/sflam_learning_probe.py --credit critic-ens-joint
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from typing import Any

import gymnasium as gym
import numpy as np
import torch as th
from scipy.optimize import minimize_scalar
from torch import nn

import edgegen  # noqa: F401  (registers the edgegen ids)
from edgegen.agents import OraclePolicy
from edgegen.agents.protocol import TUNING_EVAL_SEED
from edgegen.envs.sflam.env import SFLAMEnv
from edgegen.envs.sflam.system import round_outcome_indexed

EVAL_EPISODES = 20
BATCH, MINIBATCH, EPOCHS, CLIP, LR = 512, 128, 10, 0.2, 3e-4
CRITIC_NOISE = 0.2  # the critic learner's exploration: Gaussian noise on its tanh action


def draw_rounds(env: SFLAMEnv, episodes: range) -> dict[str, np.ndarray]:
    """The rounds of these episodes: observation, channel gain over noise and fixed latency per device."""
    obs, gain, fixed = [], [], []
    rounds = env.config.num_rounds
    for episode in episodes:
        env.reset(seed=episode)
        obs.append(env._obs[:rounds].copy())
        gain.append(env._gain_over_noise.copy())
        fixed.append(env._fixed_s.copy())
    return {"obs": np.concatenate(obs), "gain": np.concatenate(gain), "fixed": np.concatenate(fixed)}


def log_scaled(action: np.ndarray, rate: float) -> np.ndarray:
    """The env's action for a learner whose bandwidth-weight and power outputs are on a log scale.

    The learner's ``a`` in [-1, 1] means ``u = min(1, exp(rate a) / 2)`` for those two values (``a = 0``
    still means half, as on the env's linear scale), the bit-width output stays linear.
    """
    a = np.clip(action, -1.0, 1.0).astype(np.float64).reshape(*action.shape[:-1], -1, 3)
    out = a.copy()
    out[..., 1:] = 2.0 * np.minimum(1.0, 0.5 * np.exp(rate * a[..., 1:])) - 1.0
    return out.reshape(action.shape)


def play(
    env: SFLAMEnv, rounds: dict[str, np.ndarray], rows: np.ndarray, action: np.ndarray, log_rate: float = 0.0
) -> dict[str, Any]:
    """The env's round model on a batch of rounds; per device also its energy and quantization terms.

    ``log_rate > 0``: the action's bandwidth weights and powers are on ``log_scaled``'s scale.
    """
    if log_rate > 0.0:
        action = log_scaled(action, log_rate)
    u = (np.clip(action, -1.0, 1.0).astype(np.float64) + 1.0) * env._action_scale
    index, share, power = env.decisions_from_unit(u)
    tables = env._tables
    latency, round_s, energy, quant, objective = round_outcome_indexed(
        tables, rounds["gain"][rows], rounds["fixed"][rows], index, share, power
    )
    upload_s = latency - rounds["fixed"][rows]
    m = latency.shape[-1]
    return {
        "latency": latency,
        "T": round_s,
        "E": energy,
        "Q": quant,
        "objective": objective,
        # round_outcome_indexed's energy, device by device (they sum to "E")
        "device_energy": tables.compute_energy_j + power * upload_s,
        "device_quant": tables.quantization[index] / m,
    }


class EntityActorCritic(nn.Module):
    """Per-device actor and per-device (reward, cost) critic, both on a Deep Set context of the round."""

    def __init__(self, devices: int, context: int = 32, hidden: int = 64, actions: int = 3) -> None:
        super().__init__()
        self.devices = devices
        features = 2 + 1  # a device's two features and the round progress
        self.context = nn.Sequential(
            nn.Linear(features, context), nn.Tanh(), nn.Linear(context, context), nn.Tanh()
        )

        def mlp(out: int) -> nn.Sequential:
            return nn.Sequential(
                nn.Linear(features + context, hidden),
                nn.Tanh(),
                nn.Linear(hidden, hidden),
                nn.Tanh(),
                nn.Linear(hidden, out),
            )

        self.actor, self.critic = mlp(actions), mlp(2)
        self.log_std = nn.Parameter(th.full((3,), -1.5))

    def forward(self, obs: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
        """``(mean action (B, M, 3), values (B, M, 2))``."""
        per_device = obs[:, : 2 * self.devices].reshape(-1, self.devices, 2)
        progress = obs[:, 2 * self.devices :].unsqueeze(1).expand(-1, self.devices, 1)
        x = th.cat([per_device, progress], dim=-1)
        pooled = self.context(x).mean(dim=1, keepdim=True).expand(-1, self.devices, -1)
        x = th.cat([x, pooled], dim=-1)
        return self.actor(x), self.critic(x)


def clipped(advantage: th.Tensor, log_ratio: th.Tensor) -> th.Tensor:
    """PPO's clipped surrogate (to maximise), averaged."""
    ratio = log_ratio.exp()
    return th.min(advantage * ratio, advantage * ratio.clamp(1 - CLIP, 1 + CLIP)).mean()


def normalised(x: th.Tensor) -> th.Tensor:
    return (x - x.mean()) / (x.std() + 1e-8)


def seeded(seed: int) -> np.random.Generator:
    """Seed torch and return the learner's numpy generator (every learner starts from the same seed)."""
    th.manual_seed(seed)
    return np.random.default_rng(seed)


@dataclasses.dataclass(frozen=True)
class Problem:
    """What every learner trains and is judged on: the env, its training and test rounds, and the CMDP
    oracle's mean objective on the test rounds."""

    env: SFLAMEnv
    train_rounds: dict
    test_rounds: dict
    oracle_mean: float


def report(
    label: str,
    update: int,
    lam: float,
    problem: Problem,
    action: th.Tensor,
    per_update: int = BATCH,
    log_rate: float = 0.0,
) -> None:
    """Print the deterministic policy's ``action`` (one row per test round) played on the test rounds."""
    rows = np.arange(len(problem.test_rounds["obs"]))
    det = play(problem.env, problem.test_rounds, rows, action.reshape(len(rows), -1).numpy(), log_rate)
    oracle_mean = problem.oracle_mean
    print(
        f"{label} samples {(update + 1) * per_update} lambda {lam:.2f} | deterministic: T "
        f"{det['T'].mean():.3f} s, E {det['E'].mean():.3f} J, Q {det['Q'].mean():.4f}, objective "
        f"{det['objective'].mean():.3f} = {det['objective'].mean() / oracle_mean:.3f}x the oracle's",
        flush=True,
    )


def train(args: argparse.Namespace, credit: str, problem: Problem) -> None:
    """Train one learner with this credit rule; print the deterministic policy every 20 updates."""
    env, train_rounds, test_rounds = problem.env, problem.train_rounds, problem.test_rounds
    rng = seeded(args.seed)
    cfg, m = env.config, env.config.selected_devices
    limit = cfg.round_latency_s_limit
    w_t, w_e, w_q = cfg.latency_weight, cfg.energy_weight, cfg.quantization_weight
    net = EntityActorCritic(m)
    optimizer = th.optim.Adam(net.parameters(), lr=LR)
    lam = args.lambda_init
    train_obs, test_obs = th.as_tensor(train_rounds["obs"]), th.as_tensor(test_rounds["obs"])
    updates = args.samples // BATCH
    for update in range(updates):
        rows = rng.integers(0, len(train_rounds["obs"]), BATCH)
        obs = train_obs[rows]
        with th.no_grad():
            mean, _ = net(obs)
            dist = th.distributions.Normal(mean, net.log_std.exp())
            action = dist.sample()
            old_log_prob = dist.log_prob(action)  # (B, M, 3)
        out = play(env, train_rounds, rows, action.reshape(BATCH, -1).numpy(), args.log_actions)
        # the multiplier follows the sampled (stochastic) rounds, as PPO-Lag's gradient rule does
        lam = max(0.0, lam + args.lambda_lr * (float(out["T"].mean()) / limit - 1.0))
        if credit == "team":  # the round's reward and cost, a 1/M share per device (they sum back)
            target = np.stack(
                [np.repeat(-out["objective"][:, None] / m, m, 1), np.repeat(out["T"][:, None] / m, m, 1)], -1
            )
        else:
            ordered = np.sort(out["latency"], axis=1)
            excess = np.where(out["latency"] == ordered[:, -1:], ordered[:, -1:] - ordered[:, -2:-1], 0.0)
            reward = -(w_e * out["device_energy"] + w_q * out["device_quant"] + w_t * excess)
            target = np.stack([reward, excess], -1)
        target_t = th.as_tensor(target, dtype=th.float32)

        for _ in range(EPOCHS):
            for batch in th.randperm(BATCH).split(MINIBATCH):
                mean, values = net(obs[batch])
                log_prob = th.distributions.Normal(mean, net.log_std.exp()).log_prob(action[batch])
                log_ratio = log_prob - old_log_prob[batch]  # (b, M, 3)
                per_device = (target_t[batch] - values.detach()) @ th.tensor([1.0, -lam])  # (b, M)
                round_adv = normalised(per_device.sum(dim=1))
                if credit == "team":
                    objective = clipped(round_adv, log_ratio.sum(dim=(1, 2)))
                elif credit == "local":
                    objective = clipped(normalised(per_device), log_ratio.sum(dim=2))
                else:  # bits and power per device, the coupled bandwidth weights by the round
                    objective = clipped(normalised(per_device), log_ratio[..., [0, 2]].sum(dim=2)) + clipped(
                        round_adv, log_ratio[..., 1].sum(dim=1)
                    )
                loss = -objective + 0.5 * ((values - target_t[batch]) ** 2).mean()
                optimizer.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(net.parameters(), 0.5)
                optimizer.step()

        if update % 20 == 0 or update == updates - 1:
            with th.no_grad():
                mean, _ = net(test_obs)
            report(credit, update, lam, problem, mean, log_rate=args.log_actions)


class SetCritic(nn.Module):
    """A round's objective and latency from every device's features and action: a two-stage Deep Set.

    Mean and max pooling over the devices after each stage, so that it can represent the shares'
    normalisation (a sum over the devices' weights) and the round latency (a max over devices).
    With ``per_device`` the latency comes out per device (the round's is their max, taken outside).
    """

    def __init__(self, devices: int, per_device: bool, hidden: int = 64) -> None:
        super().__init__()
        self.devices, self.per_device = devices, per_device
        inputs = 2 + 1 + 3  # a device's features, the round progress, its action
        self.first = nn.Sequential(nn.Linear(inputs, hidden), nn.Tanh(), nn.Linear(hidden, hidden), nn.Tanh())
        self.second = nn.Sequential(
            nn.Linear(inputs + 2 * hidden, hidden), nn.Tanh(), nn.Linear(hidden, hidden)
        )
        self.head = nn.Sequential(
            nn.Linear(2 * hidden, hidden), nn.Tanh(), nn.Linear(hidden, 1 if per_device else 2)
        )
        self.device_head = nn.Sequential(nn.Tanh(), nn.Linear(hidden, 1))

    def forward(self, obs: th.Tensor, action: th.Tensor) -> th.Tensor:
        """``(B, 2)`` or ``(B, 1 + M)``: the logarithms of the objective and of the round's (or every
        device's) latency."""
        per_device = obs[:, : 2 * self.devices].reshape(-1, self.devices, 2)
        progress = obs[:, 2 * self.devices :].unsqueeze(1).expand(-1, self.devices, 1)
        x = th.cat([per_device, progress, action.reshape(-1, self.devices, 3)], dim=-1)
        h = self.first(x)
        pooled = th.cat([h.mean(dim=1), h.amax(dim=1)], dim=-1).unsqueeze(1).expand(-1, self.devices, -1)
        h = self.second(th.cat([x, pooled], dim=-1))
        out = self.head(th.cat([h.mean(dim=1), h.amax(dim=1)], dim=-1))
        return th.cat([out, self.device_head(h).squeeze(-1)], dim=-1) if self.per_device else out


def train_critic_learner(args: argparse.Namespace, credit: str, problem: Problem) -> None:
    """Deterministic actor through a learnt set critic (DDPG at gamma 0), same samples per update."""
    env, train_rounds, test_rounds = problem.env, problem.train_rounds, problem.test_rounds
    rng = seeded(args.seed)
    cfg, m = env.config, env.config.selected_devices
    limit = cfg.round_latency_s_limit
    per_device = credit == "critic-max"
    net, critic = EntityActorCritic(m), SetCritic(m, per_device)
    actor_opt = th.optim.Adam(net.actor.parameters(), lr=LR)
    actor_opt.add_param_group({"params": net.context.parameters()})
    critic_opt = th.optim.Adam(critic.parameters(), lr=1e-3)
    lam = args.lambda_init
    train_obs, test_obs = th.as_tensor(train_rounds["obs"]), th.as_tensor(test_rounds["obs"])
    memory_obs, memory_action, memory_target = [], [], []
    updates = args.samples // BATCH
    for update in range(updates):
        rows = rng.integers(0, len(train_rounds["obs"]), BATCH)
        obs = train_obs[rows]
        with th.no_grad():
            mean, _ = net(obs)
            action = (th.tanh(mean) + CRITIC_NOISE * th.randn_like(mean)).clamp(-1.0, 1.0)
        out = play(env, train_rounds, rows, action.reshape(BATCH, -1).numpy())
        # logarithms: the first rounds run for tens of seconds and 2-bit rounds cost ~15x the oracle's
        latency = out["latency"] if per_device else out["T"][:, None]
        target = np.log(np.concatenate([out["objective"][:, None], latency], -1))
        memory_obs.append(obs)
        memory_action.append(action.reshape(BATCH, -1))
        memory_target.append(th.as_tensor(target, dtype=th.float32))
        all_obs, all_action, all_target = (th.cat(x) for x in (memory_obs, memory_action, memory_target))
        for _ in range(EPOCHS * BATCH // MINIBATCH):
            batch = th.as_tensor(rng.integers(0, len(all_obs), 2 * MINIBATCH))
            critic_loss = ((critic(all_obs[batch], all_action[batch]) - all_target[batch]) ** 2).mean()
            critic_opt.zero_grad()
            critic_loss.backward()
            critic_opt.step()
            batch = th.as_tensor(rng.integers(0, len(all_obs), 2 * MINIBATCH))
            mean, _ = net(all_obs[batch])
            predicted = critic(all_obs[batch], th.tanh(mean).reshape(len(batch), -1))
            round_s = predicted[:, 1:].amax(dim=1).exp()  # the round: the slowest device's latency
            actor_loss = (predicted[:, 0].exp() + lam * round_s).mean()
            actor_opt.zero_grad()
            actor_loss.backward()
            actor_opt.step()
        # the multiplier follows the deterministic policy's rounds (played, not predicted) on this update's
        with th.no_grad():
            mean, _ = net(obs)
        deterministic_t = float(
            play(env, train_rounds, rows, th.tanh(mean).reshape(BATCH, -1).numpy())["T"].mean()
        )
        lam = max(0.0, lam + args.lambda_lr * (deterministic_t / limit - 1.0))
        if update % 20 == 0 or update == updates - 1:
            with th.no_grad():
                mean, _ = net(test_obs)
            report(credit, update, lam, problem, th.tanh(mean))


ACTOR_LR, FEEDBACK = 1e-4, 64  # critic-ens*: the actor's rate, deterministic rounds per update
PARTICLES, KL_EPSILON = 32, 0.1  # critic-ens-estep
# critic-ens-bits / -joint: the action at the middle of each bit-width's bin (SFLAMEnv.physical_to_action),
# rounds per actor step whose bit-widths are searched, share of exploring devices drawn uniformly
BIT_CENTRES = th.tensor([-0.8, -0.4, 0.0, 0.4, 0.8])
BITS_ROUNDS, BITS_EPSILON = 64, 0.2
JOINT_CANDIDATES, JOINT_MOVE = 32, 0.3  # critic-ens-joint: bit-width vectors per round, share moved


def device_actions(out: th.Tensor, hybrid: bool, sample_bits: bool = False) -> th.Tensor:
    """``(B, M, 3)`` actions from the actor's output: tanh of it, or (``hybrid``) a bit-width chosen
    among its first five values as logits (sampled, or the most likely) beside tanh of the other two.
    Sampled, a device's bit-width is any of the five with probability ``BITS_EPSILON``: the logits
    follow the critics' choice, and the critics can only rank the bit-widths they see played."""
    if not hybrid:
        return th.tanh(out)
    logits = out[..., :5]
    if sample_bits:  # the logits' choice, or with probability BITS_EPSILON any bit-width
        k = th.distributions.Categorical(logits=logits).sample()
        uniform = th.rand(k.shape) < BITS_EPSILON
        k = th.where(uniform, th.randint(0, 5, k.shape), k)
    else:
        k = logits.argmax(dim=-1)
    return th.cat([BIT_CENTRES[k].unsqueeze(-1), th.tanh(out[..., 5:])], dim=-1)


def best_bits(
    critics: list[SetCritic], obs: th.Tensor, action: th.Tensor, lam: float, pessimism: float
) -> th.Tensor:
    """``(B, M)``: per device, the bit-width whose action the critics' pessimistic Lagrangian prefers
    with every other value of the round's action held (one coordinate step per device)."""
    b, m = action.shape[0], action.shape[1]
    variants = action.unsqueeze(0).unsqueeze(0).repeat(m, 5, 1, 1, 1)  # (device, choice, B, M, 3)
    for n in range(m):
        variants[n, :, :, n, 0] = BIT_CENTRES.unsqueeze(-1)
    rows = variants.reshape(m * 5 * b, 3 * m)
    cost = pessimistic_lagrangian(critics, obs.repeat(m * 5, 1), rows, lam, pessimism).reshape(m, 5, b)
    return cost.argmin(dim=1).T


def best_joint_bits(
    critics: list[SetCritic], obs: th.Tensor, action: th.Tensor, lam: float, pessimism: float
) -> th.Tensor:
    """``(B, M)``: the round's bit-widths, searched jointly: the actor's current ones, all of them one
    bit-width down, all one up, and random neighbours (each device moved one bit-width up or down with
    probability ``JOINT_MOVE``), ``JOINT_CANDIDATES`` in all, scored by the critics' pessimistic
    Lagrangian with the rest of the action held."""
    b, m = action.shape[0], action.shape[1]
    current = ((action[..., 0] + 1.0) * 2.5).floor().long().clamp(0, 4)  # the bins of the centres played
    candidates = current.unsqueeze(0).repeat(JOINT_CANDIDATES, 1, 1)  # (candidate, B, M)
    step = th.randint(0, 2, candidates.shape) * 2 - 1
    moved = (candidates + step).clamp(0, 4)
    candidates = th.where(th.rand(candidates.shape) < JOINT_MOVE, moved, candidates)
    candidates[0] = current
    candidates[1] = (current - 1).clamp(0, 4)  # every device one bit-width down: the round's latency is
    candidates[2] = (current + 1).clamp(0, 4)  # its slowest device's, so only a common move may pay
    variants = action.unsqueeze(0).repeat(JOINT_CANDIDATES, 1, 1, 1)
    variants[..., 0] = BIT_CENTRES[candidates]
    rows = variants.reshape(JOINT_CANDIDATES * b, 3 * m)
    cost = pessimistic_lagrangian(critics, obs.repeat(JOINT_CANDIDATES, 1), rows, lam, pessimism)
    best = cost.reshape(JOINT_CANDIDATES, b).argmin(dim=0)
    return candidates[best, th.arange(b)]


def pessimistic_lagrangian(
    critics: list[SetCritic], obs: th.Tensor, action: th.Tensor, lam: float, pessimism: float
) -> th.Tensor:
    """``objective + lam * T`` per row, each from the ensemble's mean + ``pessimism`` std of its log."""
    predicted = th.stack([c(obs, action) for c in critics])  # (ensemble, b, 1 + M)
    upper = predicted.mean(dim=0)
    if len(critics) > 1:
        upper = upper + pessimism * predicted.std(dim=0)
    return upper[..., 0].exp() + lam * upper[..., 1:].amax(dim=-1).exp()


def estep_mstep_loss(
    net: EntityActorCritic, critics: list[SetCritic], obs: th.Tensor, lam: float, pessimism: float
) -> th.Tensor:
    """CVPO's improvement operator on the same critics: ``PARTICLES`` actions per round around the
    actor's (noise ``CRITIC_NOISE``), re-weighted by ``exp(-L / eta)`` with eta from the E-step's dual
    (KL to the sampling policy ``KL_EPSILON``); the loss is the weighted particles' negative
    log-likelihood under a Gaussian of the same noise around the actor's new mean (the M-step)."""
    b = len(obs)
    mean = th.tanh(net(obs)[0]).reshape(b, -1)
    with th.no_grad():
        particles = (mean.unsqueeze(0) + CRITIC_NOISE * th.randn(PARTICLES, *mean.shape)).clamp(-1.0, 1.0)
        cost = pessimistic_lagrangian(
            critics, obs.repeat(PARTICLES, 1), particles.reshape(PARTICLES * b, -1), lam, pessimism
        ).reshape(PARTICLES, b)
        advantage = -(cost - cost.mean(dim=0)).numpy()

        def dual(log_eta: float) -> float:
            eta = np.exp(log_eta)
            z = advantage / eta
            top = z.max(axis=0)
            lse = top + np.log(np.mean(np.exp(z - top), axis=0))
            return float(eta * KL_EPSILON + eta * lse.mean())

        log_eta = minimize_scalar(dual, bounds=(-12.0, 6.0), method="bounded").x
        weights = th.softmax(th.as_tensor(advantage / np.exp(log_eta), dtype=th.float32), dim=0)
    return (weights * ((particles - mean.unsqueeze(0)) ** 2).sum(dim=-1)).sum(dim=0).mean() / (
        2 * CRITIC_NOISE**2
    )


def train_ensemble_learner(args: argparse.Namespace, credit: str, problem: Problem) -> None:
    """``critic-ens``: the critic learner with the stabilisers an off-policy Lagrangian agent would ship.

    At gamma 0 the critic regresses observed outcomes (no bootstrap, so no target networks); what
    destabilised the naive learner is the actor walking into actions whose costs the critic gets
    wrong. Here: an ensemble of ``--ensemble`` (5) per-device set critics, each on its own minibatches, and
    the actor minimises a pessimistic Lagrangian (the ensemble's mean plus ``--pessimism`` (1) standard
    deviations of each log prediction: objective and every device's latency, the round's their max);
    one actor step for every two critic steps, at a third of the critic's rate. The multiplier follows
    the deterministic policy's rounds on ``FEEDBACK`` fresh rounds per update, counted in the samples
    and stored in the replay like the exploring ones. ``critic-ens-estep`` improves the actor by
    :func:`estep_mstep_loss` instead; ``critic-ens-bits`` / ``critic-ens-joint`` pick bit-widths by
    logits (:func:`device_actions`) trained to :func:`best_bits` / :func:`best_joint_bits`.
    """
    env, train_rounds, test_rounds = problem.env, problem.train_rounds, problem.test_rounds
    rng = seeded(args.seed)
    cfg, m = env.config, env.config.selected_devices
    limit = cfg.round_latency_s_limit
    hybrid = credit in ("critic-ens-bits", "critic-ens-joint")
    net = EntityActorCritic(m, actions=7 if hybrid else 3)
    per_device = not args.round_critic
    critics = [SetCritic(m, per_device) for _ in range(args.ensemble)]
    actor_opt = th.optim.Adam([*net.actor.parameters(), *net.context.parameters()], lr=ACTOR_LR)
    critic_opts = [th.optim.Adam(c.parameters(), lr=3e-4) for c in critics]
    lam = args.lambda_init
    train_obs, test_obs = th.as_tensor(train_rounds["obs"]), th.as_tensor(test_rounds["obs"])
    memory_obs, memory_action, memory_target = [], [], []
    per_update = BATCH + FEEDBACK
    updates = args.samples // per_update
    for update in range(updates):
        rows = rng.integers(0, len(train_rounds["obs"]), per_update)
        obs = train_obs[rows]
        with th.no_grad():
            out_actor = net(obs)[0]
            mean = th.cat(
                [
                    device_actions(out_actor[:BATCH], hybrid, sample_bits=True),
                    device_actions(out_actor[BATCH:], hybrid),
                ]
            )
        noise = CRITIC_NOISE * th.randn_like(mean)
        noise[BATCH:] = 0.0  # the last FEEDBACK rounds play the deterministic policy
        if hybrid:
            noise[..., 0] = 0.0  # the bit-widths explore by their own sampling
        action = (mean + noise).clamp(-1.0, 1.0).reshape(per_update, -1)
        out = play(env, train_rounds, rows, action.numpy())
        latency = out["latency"] if per_device else out["T"][:, None]
        target = np.log(np.concatenate([out["objective"][:, None], latency], -1))
        memory_obs.append(obs)
        memory_action.append(action)
        memory_target.append(th.as_tensor(target, dtype=th.float32))
        all_obs, all_action, all_target = (th.cat(x) for x in (memory_obs, memory_action, memory_target))
        lam = max(0.0, lam + args.lambda_lr * (float(out["T"][BATCH:].mean()) / limit - 1.0))
        for step in range(EPOCHS * BATCH // MINIBATCH):
            for critic, opt in zip(critics, critic_opts, strict=True):
                batch = th.as_tensor(rng.integers(0, len(all_obs), 2 * MINIBATCH))
                loss = ((critic(all_obs[batch], all_action[batch]) - all_target[batch]) ** 2).mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
            if step % 2:
                continue
            batch = th.as_tensor(rng.integers(0, len(all_obs), 2 * MINIBATCH))
            if credit != "critic-ens-estep":  # the actor's gradient through the critics
                out_actor = net(all_obs[batch])[0]
                act = device_actions(out_actor, hybrid)
                actor_loss = pessimistic_lagrangian(
                    critics, all_obs[batch], act.reshape(len(batch), -1), lam, args.pessimism
                ).mean()
                if hybrid:  # the bit-width logits learn the critics' per-device best choice
                    few = slice(0, BITS_ROUNDS)
                    search = best_joint_bits if credit == "critic-ens-joint" else best_bits
                    with th.no_grad():
                        target_bits = search(
                            critics, all_obs[batch][few], act[few].detach(), lam, args.pessimism
                        )
                    actor_loss = actor_loss + nn.functional.cross_entropy(
                        out_actor[few, :, :5].reshape(-1, 5), target_bits.reshape(-1)
                    )
            else:  # CVPO's E- and M-step on the same critics (half the rounds: 32 particles each)
                actor_loss = estep_mstep_loss(net, critics, all_obs[batch[:MINIBATCH]], lam, args.pessimism)
            actor_opt.zero_grad()
            actor_loss.backward()
            actor_opt.step()
        if update % 20 == 0 or update == updates - 1:
            with th.no_grad():
                mean, _ = net(test_obs)
            label = f"{credit}{' (round critic)' if args.round_critic else ''}"
            report(label, update, lam, problem, device_actions(mean, hybrid), per_update)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--credit",
        nargs="+",
        choices=(
            "team",
            "local",
            "hybrid",
            "critic",
            "critic-max",
            "critic-ens",
            "critic-ens-estep",
            "critic-ens-bits",
            "critic-ens-joint",
        ),
        default=["team"],
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="tuning seed: networks, sampling, training episodes"
    )
    parser.add_argument("--samples", type=int, default=100_000, help="rounds of training (env steps)")
    parser.add_argument("--lambda-lr", type=float, default=0.1, help="multiplier step per update (0: fixed)")
    parser.add_argument("--lambda-init", type=float, default=1.0)
    parser.add_argument("--ensemble", type=int, default=5, help="critic-ens*: critics in the ensemble")
    parser.add_argument(
        "--pessimism", type=float, default=1.0, help="critic-ens*: ensemble standard deviations added"
    )
    parser.add_argument(
        "--round-critic",
        action="store_true",
        help="critic-ens*: critics of the round's latency alone, not of every device's (whose max it is)",
    )
    parser.add_argument(
        "--log-actions",
        type=float,
        default=0.0,
        metavar="RATE",
        help="team / local / hybrid: bandwidth weights, powers on a log scale, u = min(1, exp(RATE a) / 2)",
    )
    args = parser.parse_args()
    if not args.log_actions >= 0.0:
        parser.error(f"--log-actions must be >= 0, got {args.log_actions}")
    if args.samples < BATCH:
        parser.error(f"--samples must be at least {BATCH}, got {args.samples}")
    if args.ensemble < 1:
        parser.error(f"--ensemble must be at least 1, got {args.ensemble}")
    if not args.pessimism >= 0.0:
        parser.error(f"--pessimism must be >= 0, got {args.pessimism}")
    env = gym.make("edgegen/SFLAM-v0").unwrapped
    assert isinstance(env, SFLAMEnv)
    rounds = env.config.num_rounds

    # Training rounds: the budget's worth of episodes, seeds of their own per training seed.
    start = time.perf_counter()
    first = args.seed * 1_000_000
    train_rounds = draw_rounds(env, range(first, first + args.samples // rounds))
    test_rounds = draw_rounds(env, range(TUNING_EVAL_SEED, TUNING_EVAL_SEED + EVAL_EPISODES))
    oracle_env = gym.make("edgegen/SFLAM-v0")
    oracle, oracle_objective = OraclePolicy(oracle_env), []
    for episode in range(TUNING_EVAL_SEED, TUNING_EVAL_SEED + EVAL_EPISODES):
        obs, _ = oracle_env.reset(seed=episode)
        for _ in range(rounds):
            obs, *_, info = oracle_env.step(oracle.predict(obs)[0])
            oracle_objective.append(info["objective"])
    oracle_mean = float(np.mean(oracle_objective))
    print(
        f"rounds drawn and the CMDP oracle played in {time.perf_counter() - start:.0f} s; "
        f"oracle objective {oracle_mean:.4f}",
        flush=True,
    )
    problem = Problem(env, train_rounds, test_rounds, oracle_mean)
    for credit in args.credit:
        if credit.startswith("critic-ens"):
            train_ensemble_learner(args, credit, problem)
        elif credit.startswith("critic"):
            train_critic_learner(args, credit, problem)
        else:
            train(args, credit, problem)


if __name__ == "__main__":
    main()
