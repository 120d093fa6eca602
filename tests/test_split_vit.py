"""Split ViT backend: the split is faithful, loading works, rounds train for real and are seeded."""

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch import nn
from transformers import ViTForImageClassification

import edgegen  # noqa: F401  (registers the edgegen ids)
from edgegen.envs.backends.split_vit import (
    SplitFederatedViT,
    SplitViT,
    _average_into,
    digits_dataset,
    tiny_vit_config,
)


def test_split_forward_equals_the_whole_vit_and_from_pretrained(tmp_path):
    torch.manual_seed(0)
    whole = ViTForImageClassification(tiny_vit_config()).eval()
    x = digits_dataset()[0][:16]
    split = SplitViT(whole).eval()
    with torch.no_grad():
        np.testing.assert_allclose(split(x).numpy(), whole(pixel_values=x).logits.numpy(), atol=1e-5)
    whole.save_pretrained(tmp_path / "vit")
    loaded = SplitViT.from_pretrained(str(tmp_path / "vit")).eval()
    with torch.no_grad():
        np.testing.assert_allclose(loaded(x).numpy(), split(x).numpy(), atol=1e-6)
    assert split.device_part(x).shape == (16, 17, 64)  # [CLS] + 16 patches of width 64 cross the cut


def test_fedavg_is_the_data_weighted_mean_of_real_copies():
    target, a, b = nn.Linear(3, 2), nn.Linear(3, 2), nn.Linear(3, 2)
    _average_into(target, [a, b], np.array([0.25, 0.75]))
    torch.testing.assert_close(target.weight, 0.25 * a.weight + 0.75 * b.weight)
    with torch.no_grad():
        a.weight.add_(1.0)  # the average is a copy, not a view of the participants
    assert not torch.allclose(target.weight, 0.25 * a.weight + 0.75 * b.weight)


def test_rounds_train_both_sides_are_seeded_and_learn():
    torch.set_num_threads(2)
    fl = SplitFederatedViT(num_devices=4, alpha=1.0, seed=1)
    device0 = [p.detach().clone() for p in fl.model.device_part.parameters()]
    server0 = [p.detach().clone() for p in fl.model.server_part.parameters()]
    report = fl.run_round([0, 2], [4, 32])
    assert report.activation_values.tolist() == [5 * 32 * 17 * 64] * 2
    # quantized activations still carry the gradient back to the device part
    assert any(not torch.equal(p, q) for p, q in zip(device0, fl.model.device_part.parameters(), strict=True))
    assert any(not torch.equal(p, q) for p, q in zip(server0, fl.model.server_part.parameters(), strict=True))
    twin = SplitFederatedViT(num_devices=4, alpha=1.0, seed=1)
    twin.run_round([0, 2], [4, 32])
    assert all(torch.equal(p, q) for p, q in zip(fl.model.parameters(), twin.model.parameters(), strict=True))
    for _ in range(14):
        fl.run_round([0, 1, 2, 3], [8] * 4)
    assert fl.accuracy() >= 0.5  # 10 classes: chance is 0.1
    with pytest.raises(ValueError, match="one bit-width per device"):
        fl.run_round([0, 1], [8])


def test_live_sflam_env_reports_accuracy_and_is_seeded():
    def run():
        env = gym.make("edgegen/SFLAM-v0", backend="live", num_rounds=2, max_episode_steps=2)
        env.reset(seed=4)
        return [env.step(env.unwrapped.baseline_action("fixed_8bit"))[4] for _ in range(2)]

    a, b = run(), run()
    assert [i["live_accuracy"] for i in a] == [i["live_accuracy"] for i in b]
    assert all(0.0 <= i["live_accuracy"] <= 1.0 and np.isfinite(i["live_train_loss"]) for i in a)
