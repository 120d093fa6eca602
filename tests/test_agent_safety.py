"""Training stops with a clear error on non-finite data; PPOLagrangian refuses arguments it would ignore."""

import gymnasium as gym
import numpy as np
import pytest

import edgegen  # noqa: F401  (registers the edgegen ids)
from edgegen.agents import CVPO, PPOLagrangian
from edgegen.agents.cvpo import CVPOConfig
from edgegen.agents.finite import NonFiniteTransitionError


class CorruptAt(gym.Wrapper):
    """Puts NaN into one field (``"cost"``, ``"reward"`` or ``"observation"``) at one env step."""

    def __init__(self, env: gym.Env, field: str, at_step: int) -> None:
        super().__init__(env)
        self.field, self.at_step, self.steps = field, at_step, 0

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.steps += 1
        if self.steps == self.at_step:
            if self.field == "cost":
                info = {**info, "costs": np.full_like(info["costs"], np.nan)}
            elif self.field == "reward":
                reward = float("nan")
            else:
                obs = np.full_like(obs, np.nan)
        return obs, reward, terminated, truncated, info


@pytest.mark.parametrize(
    ("field", "at_step", "name"),
    [
        ("cost", 60, "info['costs']"),
        ("reward", 60, "reward"),
        ("observation", 60, "observation"),
        ("observation", 50, "observation (the terminal one)"),  # an episode's last step (horizon 50)
    ],
)
@pytest.mark.parametrize("algo", ["cvpo", "ppo_lagrangian"])
def test_a_nan_stops_training_naming_the_env_step_and_field(algo, field, at_step, name):
    env = CorruptAt(gym.make("edgegen/FedDiffusion-v0"), field, at_step=at_step)
    if algo == "cvpo":  # updates start before the NaN arrives
        model = CVPO(
            "MlpPolicy", env, CVPOConfig(learning_starts=20, batch_size=16, updates_per_step=0.25), seed=0
        )
    else:
        model = PPOLagrangian("MlpPolicy", env, n_steps=32, batch_size=16, n_epochs=1, seed=0)
    with pytest.raises(NonFiniteTransitionError) as err:
        model.learn(100)
    message = str(err.value)
    assert "edgegen/FedDiffusion-v0" in message and f"non-finite {name}" in message
    step = int(message.split("training step ")[1].split(":")[0].split(";")[0])
    assert at_step - 1 <= step <= at_step  # the step it happened at, before any update used it


@pytest.mark.parametrize(("kwarg", "value"), [("clip_range_vf", 0.2), ("use_sde", True)])
def test_ppo_lagrangian_rejects_ppo_arguments_it_would_ignore(kwarg, value):
    with pytest.raises(ValueError, match=f"PPOLagrangian does not support {kwarg}"):
        PPOLagrangian("MlpPolicy", gym.make("edgegen/FedDiffusion-v0"), **{kwarg: value})


def test_loading_a_checkpoint_into_the_wrong_algorithm_or_env_says_so(tmp_path):
    from edgegen.agents.checkpoints import CheckpointMismatchError

    fed, meg = gym.make("edgegen/FedDiffusion-v0"), gym.make("edgegen/MEG-v0")
    cvpo = CVPO("MlpPolicy", fed, CVPOConfig(learning_starts=10, batch_size=8), seed=0)
    cvpo.save(tmp_path / "cvpo.zip")
    ppo = PPOLagrangian("MlpPolicy", fed, n_steps=32, batch_size=16, seed=0)
    ppo.save(tmp_path / "ppo.zip")
    with pytest.raises(CheckpointMismatchError, match=r"is a CVPO checkpoint.*load it with CVPO\.load"):
        PPOLagrangian.load(tmp_path / "cvpo.zip")
    with pytest.raises(
        CheckpointMismatchError, match=r"is a stable-baselines3 checkpoint.*PPOLagrangian\.load"
    ):
        CVPO.load(tmp_path / "ppo.zip")
    for loader, file in ((CVPO.load, "cvpo.zip"), (PPOLagrangian.load, "ppo.zip")):
        with pytest.raises(
            CheckpointMismatchError, match=r"trained on observations of shape \(31,\), but edgegen/MEG"
        ):
            loader(tmp_path / file, env=meg)
    # same shapes, other costs: a FedDiffusion env whose cost is renamed
    renamed = gym.make("edgegen/FedDiffusion-v0")
    renamed.unwrapped.cost_spec = renamed.unwrapped.cost_spec.__class__(("other_cost",), ("1",), (0.1,))
    for loader, file in ((CVPO.load, "cvpo.zip"), (PPOLagrangian.load, "ppo.zip")):
        with pytest.raises(
            CheckpointMismatchError, match=r"trained on the costs \['deadline_miss_fraction'\]"
        ):
            loader(tmp_path / file, env=renamed)
    # the right env still loads
    assert CVPO.load(tmp_path / "cvpo.zip", env=fed).num_timesteps == 0
    assert PPOLagrangian.load(tmp_path / "ppo.zip", env=fed).cost_spec.names == ("deadline_miss_fraction",)
