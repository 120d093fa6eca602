"""Glue for RL libraries that need more than ``gym.make`` (docs/integrations.md has the table).

- :mod:`edgegen.integrations.rllib`: register the ids in every RLlib worker, log episode costs.
- :mod:`edgegen.integrations.rl_zoo3`: rl-baselines3-zoo with PPO-Lagrangian and the shipped recipes.
- :mod:`edgegen.integrations.omnisafe`: OmniSafe's ``CMDP`` interface (tensors, one scalar cost).

Each module imports its library only when used; none of them is needed for stable-baselines3,
tianshou, TorchRL or plain Gymnasium vector envs, which take the envs as they are.
"""
