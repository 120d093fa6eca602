"""One copy of every formula: the envs, oracles and tests call the shared model functions.

Each test fails if a copy drifts from the shared function (values compared), or if a known copy comes
back (sources searched).
"""

from __future__ import annotations

import re
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import edgegen.envs.wireless
from edgegen.envs.meg.channel import episode_snr
from edgegen.envs.meg.config import make_config as make_meg_config
from edgegen.envs.meg.cost_model import latent_bits, merged_token_count, task_energy_j, task_latency_s
from edgegen.envs.quantization import RANGE_HEADER_BITS, payload_bits, variance_bound
from edgegen.envs.sflam.config import make_config as make_sflam_config
from edgegen.envs.sflam.system import (
    RoundTables,
    device_compute_energy_j,
    per_value_quantization_error,
    quantization_term,
    round_outcome,
    upload_bits,
)

ROOT = Path(__file__).resolve().parents[1]


def test_meg_step_equals_the_cost_model():
    env = gym.make("edgegen/MEG-v0", preset="fading")
    cfg = env.unwrapped.config
    env.reset(seed=3)
    rng = np.random.default_rng(0)
    for _ in range(200):
        action = rng.uniform(-1.2, 1.2, 2).astype(np.float32)
        _, _, _, truncated, info = env.step(action)
        merged = merged_token_count(float(info["merge_ratio"]), cfg.n_tokens)
        size = cfg.latent_size
        bits = cfg.images_per_task * latent_bits(merged, cfg.latent_channels, size, size, cfg.bits_per_value)
        assert info["merged_tokens"] == merged and info["bits"] == bits
        tx = bits / info["rate_bps"]
        model = cfg.compute_model
        latency = task_latency_s(model, info["steps"], tx, cfg.images_per_task)
        energy = task_energy_j(model, info["steps"], tx, cfg.tx_power_w, cfg.images_per_task)
        np.testing.assert_allclose(info["costs"], [latency, energy], rtol=1e-14)
        if truncated:
            env.reset()


def test_meg_channel_fading_goes_through_the_shared_gauss_markov_step(monkeypatch):
    cfg = make_meg_config("fading")
    reference = episode_snr(cfg, np.random.default_rng(1), 50)
    # the recursion by hand on the same draws
    rng = np.random.default_rng(1)
    distance = rng.uniform(cfg.min_distance_m, cfg.max_distance_m, 50)
    m, a = cfg.fading_branches, cfg.fading_correlation
    w = (rng.standard_normal((50, m)) + 1j * rng.standard_normal((50, m))) * np.sqrt(0.5)
    h = [w[0]]
    for t in range(1, 50):
        h.append(a * h[-1] + np.sqrt(1 - a * a) * w[t])
    gain = np.mean(np.abs(np.array(h)) ** 2, axis=1)
    path = cfg.tx_power_w * 10 ** (-(35.3 + 37.6 * np.log10(distance)) / 10) / cfg.noise_power_w
    np.testing.assert_allclose(reference, path * gain, rtol=1e-12)
    # and the channel really calls the shared function: break it, and the channel changes
    monkeypatch.setattr(edgegen.envs.wireless, "gauss_markov_step", lambda prev, inn, corr: 2.0 * inn)
    assert not np.allclose(episode_snr(cfg, np.random.default_rng(1), 50), reference)


def test_sflam_quantization_header_and_compute_energy_are_the_shared_ones():
    cfg = make_sflam_config()
    bits = np.array(cfg.bits_choices)
    quantized = bits < 32
    expected = np.where(quantized, variance_bound(1, cfg.activation_range, bits), 0.0)
    np.testing.assert_array_equal(per_value_quantization_error(cfg, bits), expected)
    np.testing.assert_array_equal(RoundTables.from_config(cfg).quantization, expected)
    assert quantization_term(cfg, bits) == pytest.approx(expected.mean(), rel=1e-15)
    np.testing.assert_array_equal(
        upload_bits(cfg, bits[quantized]), payload_bits(cfg.activation_values, bits[quantized])
    )
    assert upload_bits(cfg, 32) == 32 * cfg.activation_values  # full precision: no range header
    assert payload_bits(10, 4) == 10 * 4 + RANGE_HEADER_BITS
    # the env's step energy is M compute energies plus the radio's
    env = gym.make("edgegen/SFLAM-v0")
    env.reset(seed=2)
    _, _, _, _, info = env.step(env.action_space.sample())
    radio = np.sum(info["power_w"] * (info["latency_s"] - env.unwrapped._fixed_s[0]))
    m = cfg.selected_devices
    assert info["energy_j"] == pytest.approx(m * device_compute_energy_j(cfg) + radio, rel=1e-9)
    gain, fixed, block = (env.unwrapped._block_gain[0], env.unwrapped._fixed_s[0], info["block"])
    out = round_outcome(cfg, gain[np.arange(m), block], fixed, info["bits"], info["share"], info["power_w"])
    assert out.energy_j == pytest.approx(info["energy_j"], rel=1e-12)
    assert out.objective == pytest.approx(info["objective"], rel=1e-12)


def test_fed_payload_uses_the_quantizer_payload():
    env = gym.make("edgegen/FedDiffusion-v0")
    env.reset(seed=0)
    problem = env.unwrapped.round_problem()
    bits = env.unwrapped._bits
    np.testing.assert_array_equal(problem.payload_bits, payload_bits(env.unwrapped.config.num_params, bits))


# Known copies that were removed; each pattern may appear only in the one module that owns it.
OWNED_PATTERNS = {
    r"kappa \* config\.device_cycles": "envs/sflam/system.py",
    r"activation_range\s*\*\*\s*2": None,  # the quantizer bound is quantization.variance_bound
    r"64\.0 \*|\* 64\.0|\+ 64\.0|\+ 64\)|\+ 64$": None,  # the range header is RANGE_HEADER_BITS
    r"def rate_matching": "envs/sflam/scheduler.py",
    r"sqrt\(1\.0 - \w+ ?\* ?\w+\)|np\.sqrt\(1\.0 - correlation": "envs/wireless.py",
}


@pytest.mark.parametrize("pattern", sorted(OWNED_PATTERNS))
def test_no_known_copy_came_back(pattern):
    where = []
    for path in sorted(ROOT.glob("*/**/*.py")):
        rel = path.relative_to(ROOT).as_posix()
        if rel.split("/")[0] not in ("envs", "solvers", "agents"):
            continue
        if re.search(pattern, path.read_text(), flags=re.MULTILINE):
            where.append(rel)
    owner = OWNED_PATTERNS[pattern]
    assert where == ([owner] if owner else []), where
