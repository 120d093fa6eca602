import math

import numpy as np
import pytest
from numpy.testing import assert_allclose

from edgegen.envs import wireless as w


def test_power_conversions_hand_values():
    assert_allclose(w.dbm_to_w([30.0, 0.0, 23.0]), [1.0, 1e-3, 10**-0.7])
    assert_allclose(w.w_to_dbm(w.dbm_to_w(-174.0)), -174.0)
    assert_allclose(w.db_to_linear(20.0), 100.0)
    assert_allclose(w.linear_to_db(0.5), 10 * math.log10(0.5))


def test_path_loss_models_hand_values():
    # 35.3 + 37.6 log10(250) = 35.3 + 37.6 * 2.397940 = 125.4625 dB
    assert_allclose(w.path_loss_db_micro(250.0), 125.4625, atol=1e-4)
    # 128.1 + 37.6 log10(d / 1 km): 128.1 dB at 1 km, 90.5 dB at 100 m
    assert_allclose(w.path_loss_db_macro([1000.0, 100.0]), [128.1, 90.5])


@pytest.mark.parametrize("fn", [w.path_loss_db_micro, w.path_loss_db_macro])
def test_path_loss_rejects_non_positive_distance(fn):
    with pytest.raises(ValueError, match="distance_m must be > 0"):
        fn([100.0, 0.0])


def test_noise_and_shannon_rate():
    # -174 dBm/Hz over 1 MHz = -114 dBm
    assert_allclose(w.noise_power_w(-174.0, 1e6), 10 ** (-144 / 10))
    # SNR 1 -> 1 bit/s/Hz, SNR 3 -> 2 bit/s/Hz
    assert_allclose(w.shannon_rate_bps(2e6, [1.0, 3.0], 1e-9, 1e-9), [2e6, 4e6])


def test_channel_gain_combines_losses():
    h = np.array([1 + 1j, 0.5])
    gain = w.channel_gain(100.0, 10.0, h)
    assert_allclose(gain, 1e-11 * np.abs(h) ** 2)
    assert_allclose(w.channel_gain(90.0, -10.0, 2.0), 2e-8)


def test_rayleigh_statistics(rng):
    h = w.rayleigh_fading(rng, 200_000)
    power = np.abs(h) ** 2
    # |h|^2 ~ Exp(1): mean 1, P(|h|^2 < 1) = 1 - 1/e
    assert abs(power.mean() - 1.0) < 0.01
    assert abs(np.mean(power < 1.0) - (1 - math.exp(-1))) < 0.005
    gains = w.rayleigh_power_gain(rng, 200_000)
    assert abs(gains.mean() - 1.0) < 0.01
    assert abs(np.mean(gains < 1.0) - (1 - math.exp(-1))) < 0.005


def test_gauss_markov_keeps_unit_power_and_correlation(rng):
    a = 0.9
    h = w.rayleigh_fading(rng, 50_000)
    h_next = w.gauss_markov_fading(rng, h, a)
    assert abs(np.mean(np.abs(h_next) ** 2) - 1.0) < 0.02
    corr = np.mean(h_next * np.conj(h)).real
    assert abs(corr - a) < 0.02
    with pytest.raises(ValueError, match="correlation must be in"):
        w.gauss_markov_fading(rng, h, 1.5)
