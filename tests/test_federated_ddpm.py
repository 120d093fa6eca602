"""Federated DDPM backend: Frechet distance against closed forms, real quantized rounds, live env."""

import gymnasium as gym
import numpy as np
import pytest
import torch

import edgegen  # noqa: F401  (registers the edgegen ids)
from edgegen.envs.backends.data import shape_images
from edgegen.envs.backends.federated_ddpm import FederatedDDPM, FederatedDDPMConfig
from edgegen.envs.backends.frechet import frechet_distance, gaussian_statistics, load_classifier

SMALL = FederatedDDPMConfig(
    num_devices=3,
    local_steps=2,
    batch_size=16,
    train_images=300,
    heldout_images=100,
    fd_samples=50,
    sample_steps=4,
)


def test_frechet_distance_of_commuting_gaussians_in_closed_form():
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.normal(size=(5, 5)))
    d1, d2 = rng.uniform(0.1, 3.0, 5), rng.uniform(0.1, 3.0, 5)
    mu1, mu2 = rng.normal(size=5), rng.normal(size=5)
    s1, s2 = q @ np.diag(d1) @ q.T, q @ np.diag(d2) @ q.T
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(d1) - np.sqrt(d2)) ** 2)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-10)
    # 1-D: (m1 - m2)^2 + (s1 - s2)^2
    assert frechet_distance(
        np.array([1.0]), np.array([[4.0]]), np.array([-1.0]), np.array([[9.0]])
    ) == pytest.approx(5.0)


def test_frechet_distance_from_samples_and_of_identical_sets():
    rng = np.random.default_rng(1)
    a = rng.normal([0.0, 1.0], [1.0, 2.0], size=(200_000, 2))
    b = rng.normal([1.0, 1.0], [1.0, 1.0], size=(200_000, 2))
    # closed form: 1 + (2 - 1)^2 = 2
    assert frechet_distance(*gaussian_statistics(a), *gaussian_statistics(b)) == pytest.approx(2.0, abs=0.03)
    feats = rng.normal(size=(300, 64))  # singular-free, but identical sets must give ~0 in any case
    assert abs(frechet_distance(*gaussian_statistics(feats), *gaussian_statistics(feats))) < 1e-8
    relu = np.maximum(feats, 0)[:, :40]
    relu[:, :5] = 0.0  # dead units: singular covariances, as ReLU features have
    assert abs(frechet_distance(*gaussian_statistics(relu), *gaussian_statistics(relu))) < 1e-8


def test_shipped_classifier_recognises_fresh_shapes_and_errors_name_the_file(tmp_path):
    model = load_classifier()
    labels = np.arange(500) % 10
    with torch.no_grad():
        pred = model(torch.from_numpy(shape_images(labels, seed=4242, size=16))).argmax(1).numpy()
    assert (pred == labels).mean() >= 0.97
    with pytest.raises(FileNotFoundError, match=r"nope.safetensors.*python -m edgegen.envs.backends.frechet"):
        load_classifier(tmp_path / "nope.safetensors")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00" * 16)
    with pytest.raises(
        ValueError, match=r"bad.safetensors are corrupt.*python -m edgegen.envs.backends.frechet"
    ):
        load_classifier(bad)


def test_two_real_rounds_quantization_error_within_the_bound_and_seeded():
    torch.set_num_threads(2)
    fl = FederatedDDPM(SMALL, seed=3)
    before = [p.detach().clone() for p in fl.model.parameters()]
    losses = []
    for _ in range(2):
        report = fl.run_round([4, 8, 32])
        # the unquantized device sends its exact update; the others within the variance bound
        assert report.quantization_error_sq[2] == 0.0 and report.quantization_error_bound[2] == 0.0
        assert np.all(report.quantization_error_sq[:2] > 0)
        assert np.all(report.quantization_error_sq[:2] <= report.quantization_error_bound[:2])
        # 4-bit error is ~ (2^8 - 1)^2 / (2^4 - 1)^2 = 289 times the 8-bit one, give or take the ranges
        assert report.quantization_error_sq[0] > 30 * report.quantization_error_sq[1]
        headers = 64 * sum(1 for _ in fl.model.parameters())  # one min-max pair per quantized tensor
        expected_bits = fl.num_params * np.array([4, 8, 32]) + [headers, headers, 0]
        np.testing.assert_array_equal(report.upload_bits, expected_bits)
        losses.append(report.train_loss.mean())
    assert any(not torch.equal(a, b) for a, b in zip(before, fl.model.parameters(), strict=True))
    twin = FederatedDDPM(SMALL, seed=3)
    for _ in range(2):
        twin.run_round([4, 8, 32])
    assert all(torch.equal(a, b) for a, b in zip(fl.model.parameters(), twin.model.parameters(), strict=True))
    assert np.isfinite(fl.heldout_loss()) and fl.heldout_loss() == twin.heldout_loss()
    with pytest.raises(ValueError, match="one entry per device"):
        fl.run_round([8, 8])
    with pytest.raises(ValueError, match=r"bits must be integers in \[1, 32\]"):
        fl.run_round([0, 8, 8])


def test_live_feddiffusion_episode_is_seeded_and_reports_quality():
    def episode():
        env = gym.make(
            "edgegen/FedDiffusion-v0",
            backend="live",
            num_devices=3,
            num_rounds=2,
            max_episode_steps=2,
            live_quality_weight=1.0,
        )
        env.reset(seed=11)
        out = []
        for _ in range(2):
            _, reward, _, truncated, info = env.step(env.unwrapped.oracle_action())
            out.append((reward, info))
        return out, truncated

    (first, truncated), (second, _) = episode(), episode()
    assert truncated
    for (r1, i1), (r2, i2) in zip(first, second, strict=True):
        assert r1 == r2 and i1["live_heldout_loss"] == i2["live_heldout_loss"]
        assert r1 == pytest.approx(-i1["energy_j"] / 10.0 - i1["live_heldout_loss"])
        np.testing.assert_array_equal(i1["live_upload_bits"][i1["upload_bits"] < 32] % 1, 0)
    assert np.isnan(first[0][1]["live_frechet_distance"])  # not computed before the last round
    assert first[1][1]["live_frechet_distance"] == second[1][1]["live_frechet_distance"] > 0
