"""Per-frequency link gains of the MEG backbone (envs.backends.diffusion.latent_spectrum)."""

import math

import pytest
import torch

from edgegen.envs.backends.diffusion.latent_spectrum import (
    apply_gain,
    detail_gain,
    fold_gain,
    folded_shape,
    radial_frequency,
)


def test_radial_frequency_on_a_16_grid():
    radius = radial_frequency(16, 16)
    assert radius[0, 0] == 0
    assert radius[0, 1] == pytest.approx(1 / 16)
    assert radius[8, 8] == pytest.approx(math.sqrt(0.5))  # Nyquist on both axes
    assert torch.equal(radius[1, 0], radius[15, 0])  # f and -f


def test_detail_gain_is_one_below_low_eps_above_high_and_a_raised_cosine_between():
    gain = detail_gain(16, 16, 0.05, low=0.2, high=0.3)
    radius = radial_frequency(16, 16)
    assert torch.all(gain[radius <= 0.2] == 1.0)
    assert torch.allclose(gain[radius >= 0.3], torch.tensor(0.05))
    # |f| = 0.25 (bin (4, 0)) is halfway: cos(pi / 2) = 0, so the mean of 1 and 0.05
    assert gain[4, 0] == pytest.approx(0.525)
    # |f| = sqrt(2) * 3 / 16 = 0.265: weight 0.5 (1 + cos(pi 0.652))
    w = 0.5 * (1 + math.cos(math.pi * (math.sqrt(2) * 3 / 16 - 0.2) / 0.1))
    assert gain[3, 3] == pytest.approx(w + (1 - w) * 0.05, rel=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"detail_scale": 0.0}, r"detail_scale must lie in \(0, 1\]"),
        ({"detail_scale": 1.5}, r"detail_scale must lie in \(0, 1\]"),
        ({"detail_scale": 0.1, "low": 0.3, "high": 0.3}, "need 0 <= low < high"),
    ],
)
def test_detail_gain_rejects_bad_values(kwargs, match):
    with pytest.raises(ValueError, match=match):
        detail_gain(16, 16, **kwargs)


def test_apply_gain_is_real_linear_and_inverted_by_the_reciprocal_gain():
    torch.manual_seed(0)
    z = torch.randn(3, 4, 16, 16)
    gain = 1.7 * detail_gain(16, 16, 0.03)
    y = apply_gain(z, gain)
    assert y.dtype == z.dtype and y.shape == z.shape
    torch.testing.assert_close(apply_gain(y, 1.0 / gain), z, atol=1e-4, rtol=0)
    # an fp16 latent (a half-precision pipeline) keeps its dtype; the FFT runs in fp32
    half = apply_gain(z.half(), gain)
    assert half.dtype == torch.float16
    torch.testing.assert_close(half.float(), y, atol=2e-3, rtol=0)
    # A constant latent is pure DC: only the gain at f = 0 acts on it.
    torch.testing.assert_close(apply_gain(torch.ones(1, 1, 16, 16), gain), torch.full((1, 1, 16, 16), 1.7))
    # A checkerboard is the Nyquist frequency on both axes: scaled by the gain there.
    board = (-1.0) ** (torch.arange(16)[:, None] + torch.arange(16)[None, :]).float()
    torch.testing.assert_close(apply_gain(board[None, None], gain)[0, 0], board * 1.7 * 0.03)


def test_apply_gain_matches_an_explicit_band_split():
    """Low band kept, high band scaled: y = low + eps * high, with the split done by masks."""
    torch.manual_seed(1)
    z = torch.randn(2, 4, 16, 16)
    radius = radial_frequency(16, 16)
    mask = (radius < 0.25).float()
    spectrum = torch.fft.fft2(z)
    low = torch.fft.ifft2(spectrum * mask).real
    high = z - low
    torch.testing.assert_close(apply_gain(z, mask + 0.1 * (1 - mask)), low + 0.1 * high, atol=1e-5, rtol=0)


def test_fold_gain_is_even_in_both_axes_and_keeps_the_free_values():
    rows, cols = folded_shape(16, 16)
    assert (rows, cols) == (9, 9)
    free = torch.arange(2 * rows * cols, dtype=torch.float32).reshape(2, rows, cols)
    full = fold_gain(free, 16, 16)
    assert full.shape == (2, 16, 16)
    assert torch.equal(full[:, :rows, :cols], free)
    assert torch.equal(full, full.flip(-1).roll(1, -1))  # g[k, -l] = g[k, l]
    assert torch.equal(full, full.flip(-2).roll(1, -2))  # g[-k, l] = g[k, l]
    # so a folded gain keeps a real latent real: the imaginary part after the inverse FFT is round-off
    z = torch.randn(2, 16, 16)
    out = torch.fft.ifft2(torch.fft.fft2(z) * full)
    assert out.imag.abs().max() < 1e-3 * out.real.abs().max()


def test_link_gain_for_gives_unit_variance_and_the_decoder_learns_an_even_receive_gain():
    from edgegen.envs.backends.diffusion.backbone import build_vae
    from edgegen.envs.backends.diffusion.train import finetune_decoder, link_gain_for

    torch.manual_seed(0)
    z = 2.0 * torch.randn(8, 4, 16, 16)
    gain = link_gain_for(z, detail_scale=0.05)
    assert float(apply_gain(z, gain).std()) == pytest.approx(1.0, abs=1e-5)
    torch.testing.assert_close(gain / gain[0, 0], detail_gain(16, 16, 0.05))  # c a(f)
    vae = build_vae()
    latents = {n: apply_gain(torch.randn(4, 4, 16, 16), gain) for n in range(4, 13)}
    references = torch.rand(4, 3, 32, 32) * 2 - 1
    _, receive = finetune_decoder(vae, latents, references, iters=3, batch=2, log={}, link_gain=gain)
    assert receive.shape == (4, 16, 16)
    assert torch.equal(receive, receive.flip(-1).roll(1, -1)) and torch.equal(
        receive, receive.flip(-2).roll(1, -2)
    )
    # started at the plain decoder's 1 / gain and moved a little in three warm-up steps
    ratio = receive * gain
    assert float((ratio - 1).abs().max()) < 0.01 and float((ratio - 1).abs().max()) > 0
    # without a link gain there is nothing to learn
    assert finetune_decoder(vae, latents, references, iters=1, batch=2, log={})[1] is None


def test_link_and_decoder_stage_on_pool_latents_returns_a_gained_pipeline():
    from edgegen.envs.backends.diffusion.backbone import (
        SplitLatentDiffusion,
        build_scheduler,
        build_unet,
        build_vae,
    )
    from edgegen.envs.backends.diffusion.train import N_MAX, N_MIN, link_and_decoder, pool_latents

    torch.manual_seed(0)
    pipe = SplitLatentDiffusion(build_unet(), build_vae(), build_scheduler(), torch.randn(3, 1, 64))
    z = pool_latents(pipe, 3)
    assert sorted(z) == list(range(N_MIN, N_MAX + 1)) and z[N_MAX].shape == (3, 4, 16, 16)
    torch.testing.assert_close(z[5][1], pipe.denoise([1], [10_001], 5)[0])  # prompts cycle, seeds from 10000
    log = {}
    out = link_and_decoder(pipe, z, iters=2, log=log, detail_scale=0.1, bands=(0.25, 0.35))
    assert out.unet is pipe.unet and out.vae is pipe.vae and out.merging_vae is not None
    # the link gain is a(f) times the unit-variance factor, fitted on the N_max latents
    torch.testing.assert_close(out.link_gain / out.link_gain[0, 0], detail_gain(16, 16, 0.1, 0.25, 0.35))
    assert float(apply_gain(z[N_MAX], out.link_gain).std()) == pytest.approx(1.0, abs=1e-5)
    assert log["link"]["unit_variance_factor"] == pytest.approx(float(out.link_gain[0, 0]))
    assert out.finetuned_receive_gain.shape == (4, 16, 16)
    # the plain decoder of the gained pipeline sees what the ungained one saw
    torch.testing.assert_close(
        out.decode(apply_gain(z[6], out.link_gain), finetuned=False),
        pipe.decode(z[6], finetuned=False),
        atol=1e-4,
        rtol=0,
    )
