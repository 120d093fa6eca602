"""MEG cost model against latencies and energies computed by hand."""

import numpy as np
import pytest

from edgegen.envs.backends.flops import get_count
from edgegen.envs.meg.config import make_config
from edgegen.envs.meg.cost_model import (
    ComputeModel,
    image_bits,
    latent_bits,
    merged_token_count,
    task_energy_j,
    task_latency_s,
    transmission_latency_s,
)

RATE = 1.6647e6  # the authors' fixed link rate for their Table II comparison, bit/s


@pytest.mark.parametrize("n_images", [1, 2])
def test_transmission_latency_by_hand(n_images):
    # full SDXL latent: 4 x 128 x 128 fp16 values = 65,536 x 16 bits
    full = latent_bits(0)
    assert full == 65536 * 16
    assert transmission_latency_s(full, RATE, n_images) == pytest.approx(
        n_images * 1048576 / 1.6647e6, rel=1e-12
    )
    # the 1024 x 1024 x 3 fp16 image sent instead (centralised generation)
    assert transmission_latency_s(image_bits(), RATE, n_images) == pytest.approx(
        n_images * 50331648 / 1.6647e6
    )
    assert transmission_latency_s(image_bits(), RATE, 1) == pytest.approx(30.2346, abs=1e-4)
    # merged latent, rho = 0.5: r = 2048 of 4096 tokens; 2048 tokens of 16 values + 2048 indices
    r = merged_token_count(0.5, 4096)
    assert r == 2048
    assert transmission_latency_s(latent_bits(r), RATE, n_images) == pytest.approx(
        n_images * 16 * (16 * 2048 + 2048) / 1.6647e6
    )
    assert transmission_latency_s(latent_bits(r), RATE, 1) == pytest.approx(0.33463, abs=1e-5)


def test_merging_caps_at_three_quarters_and_bits_fall_with_rho():
    assert merged_token_count(0.75, 4096) == merged_token_count(1.0, 4096) == 3072
    assert latent_bits(3072) == 16 * (16 * 1024 + 3072)
    bits = latent_bits(merged_token_count(np.linspace(0, 0.75, 16), 4096))
    assert np.all(np.diff(bits) < 0)
    with pytest.raises(ValueError, match="rho"):
        merged_token_count(-0.1, 4096)
    with pytest.raises(ValueError, match="n_merged"):
        latent_bits(4000)


def test_task_latency_and_energy_by_hand():
    f_step = get_count("sdxl-unet").forward_flops
    f_dec = get_count("sdxl-vae-decoder").forward_flops
    model = make_config().compute_model
    assert model == ComputeModel(f_step, f_dec)
    tx = latent_bits(1024) / RATE
    # N = 8 steps with classifier-free guidance (2 U-Net passes per step)
    latency = 8 * 2 * f_step / 40e12 + 0.05 + tx + f_dec / (0.5 * 40e12)
    energy = 7.5e-12 * 8 * 2 * f_step + 7.5e-12 / 0.8 * f_dec + 1.0 * tx
    assert task_latency_s(model, 8, tx) == pytest.approx(latency, rel=1e-12)
    assert task_energy_j(model, 8, tx, 1.0) == pytest.approx(energy, rel=1e-12)
    # two images: every term doubles except the access latency
    assert task_latency_s(model, 8, 2 * tx, n_images=2) == pytest.approx(2 * latency - 0.05, rel=1e-12)
    assert task_energy_j(model, 8, 2 * tx, 1.0, n_images=2) == pytest.approx(2 * energy, rel=1e-12)
    # the design's headline numbers: 6.76 TFLOP per step, 10.47 TFLOP per decode
    assert f_step == pytest.approx(6.761e12, rel=1e-3) and f_dec == pytest.approx(10.470e12, rel=1e-3)


def test_table_ii_latencies_of_the_meg_paper():
    # MEG paper, Table II: 2 images over a fixed 1.6647 Mbit/s link. Sending the full fp16 latents,
    # sending the decoded 1024^2 fp16 images (centralised generation), and pruning 10 % of the latent's
    # tokens with no index overhead.
    full = transmission_latency_s(latent_bits(0), RATE, 2)
    images = transmission_latency_s(image_bits(), RATE, 2)
    pruned = transmission_latency_s(latent_bits(merged_token_count(0.1, 4096), index_bits=0), RATE, 2)
    assert full == pytest.approx(1.2598, rel=1e-3)
    assert images == pytest.approx(60.468, rel=1e-3)
    assert pruned == pytest.approx(1.1337, rel=1e-3)
    # with the index values that merging needs, the same 10 % costs more than pruning
    assert transmission_latency_s(latent_bits(merged_token_count(0.1, 4096)), RATE, 2) > pruned
    with pytest.raises(ValueError, match="index_bits"):
        latent_bits(10, index_bits=-1)
