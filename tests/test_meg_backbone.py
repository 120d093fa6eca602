"""The split latent-diffusion backbone: loading, persistence errors, live env, and what the profile shows."""

import gymnasium as gym
import numpy as np
import pytest
import torch

import edgegen  # noqa: F401  (registers the edgegen ids)
from edgegen.envs.backends.diffusion.backbone import (
    SplitLatentDiffusion,
    build_scheduler,
    build_unet,
    build_vae,
    load_default_backbone,
)
from edgegen.envs.backends.diffusion.latent_spectrum import detail_gain, radial_frequency
from edgegen.envs.backends.diffusion.profile import build_profile
from edgegen.envs.meg.quality import DEFAULT_PROFILE, load_profile


@pytest.fixture(scope="module")
def shipped():
    torch.set_num_threads(2)
    return load_default_backbone()


def _random_backbone(seed=0, gains=False):
    torch.manual_seed(seed)
    parts = (build_unet(), build_vae(), build_scheduler(), torch.randn(3, 1, 64), build_vae())
    extra = {}
    if gains:  # drawn after the weights, so that the same seed gives the same weights either way
        extra = {
            "link_gain": 1.3 * detail_gain(16, 16, 0.1),
            "finetuned_receive_gain": torch.rand(4, 16, 16) + 0.5,
        }
    return SplitLatentDiffusion(*parts, **extra)


@pytest.mark.parametrize("gains", [False, True])
def test_save_then_from_pretrained_gives_identical_images(tmp_path, gains):
    pipe = _random_backbone(gains=gains)
    pipe.save_pretrained(tmp_path / "tiny")
    loaded = SplitLatentDiffusion.from_pretrained(tmp_path / "tiny")
    a = pipe.generate([0, 2], [11, 12], num_steps=4, rho=0.5, sigma=0.1)
    b = loaded.generate([0, 2], [11, 12], num_steps=4, rho=0.5, sigma=0.1)
    assert torch.equal(a, b)
    assert loaded.n_prompts == 3 and loaded.latent_shape == (4, 16, 16)
    # different seeds give different images; the same seed the same image
    assert not torch.equal(a[0], pipe.generate([0], [99], num_steps=4)[0])
    for name in ("link_gain", "finetuned_receive_gain"):
        stored = getattr(loaded, name)
        assert (stored is None) if not gains else torch.equal(stored, getattr(pipe, name))
    # saving a backbone without gains over one with them leaves no stale gains behind
    if gains:
        _random_backbone().save_pretrained(tmp_path / "tiny")
        assert SplitLatentDiffusion.from_pretrained(tmp_path / "tiny").link_gain is None


def test_link_gain_sits_between_the_unet_and_the_decoders():
    """denoise sends c a(f) z; the plain decoder undoes it; the fine-tuned one applies its own gain."""
    plain = _random_backbone()
    with_gains = _random_backbone(gains=True)  # same seed: same weights
    z = plain.denoise([0, 1], [5, 6], 4)
    y = with_gains.denoise([0, 1], [5, 6], 4)
    spectrum_ratio = torch.fft.fft2(y) / torch.fft.fft2(z)
    torch.testing.assert_close(spectrum_ratio.real, with_gains.link_gain.expand_as(y), atol=1e-3, rtol=1e-3)
    torch.testing.assert_close(
        with_gains.decode(y, finetuned=False), plain.decode(z, finetuned=False), atol=1e-4, rtol=0
    )
    expected = with_gains.merging_vae.decode(
        torch.fft.ifft2(torch.fft.fft2(y) * with_gains.finetuned_receive_gain).real
        / with_gains.scaling_factor
    ).sample.clamp(-1, 1)
    torch.testing.assert_close(with_gains.decode(y, finetuned=True), expected, atol=1e-4, rtol=0)


def test_bad_link_gains_are_rejected():
    torch.manual_seed(0)
    parts = (build_unet(), build_vae(), build_scheduler(), torch.randn(3, 1, 64))
    with pytest.raises(
        ValueError, match=r"link_gain must be a positive \(16, 16\) tensor, got shape \(8, 8\)"
    ):
        SplitLatentDiffusion(*parts, link_gain=torch.ones(8, 8))
    with pytest.raises(ValueError, match=r"link_gain must be a positive .* smallest value 0"):
        SplitLatentDiffusion(*parts, link_gain=torch.zeros(16, 16))
    with pytest.raises(
        ValueError, match=r"finetuned_receive_gain must have shape \(16, 16\) or \(4, 16, 16\)"
    ):
        SplitLatentDiffusion(*parts, finetuned_receive_gain=torch.ones(3, 16, 16))


def test_loading_errors_name_the_file_and_the_rebuild_command(tmp_path):
    pipe = _random_backbone()
    pipe.save_pretrained(tmp_path / "b")
    (tmp_path / "b" / "prompt_embeds.safetensors").unlink()
    with pytest.raises(ValueError, match="pass prompt_embeds"):
        SplitLatentDiffusion.from_pretrained(tmp_path / "b")
    assert (
        SplitLatentDiffusion.from_pretrained(tmp_path / "b", prompt_embeds=torch.zeros(2, 1, 64)).n_prompts
        == 2
    )
    with pytest.raises(
        FileNotFoundError, match=r"nowhere/unet.*python -m edgegen.envs.backends.diffusion.train"
    ):
        SplitLatentDiffusion.from_pretrained(tmp_path / "nowhere" if False else _mkdir(tmp_path / "nowhere"))
    weights = next((tmp_path / "b" / "vae").glob("*.safetensors"))
    weights.write_bytes(b"garbage")
    with pytest.raises(
        FileNotFoundError, match=r"corrupt or incomplete.*python -m edgegen.envs.backends.diffusion.train"
    ):
        SplitLatentDiffusion.from_pretrained(tmp_path / "b", prompt_embeds=torch.zeros(2, 1, 64))


def _mkdir(path):
    path.mkdir()
    return path


def test_bad_prompt_ids_and_seed_counts(shipped):
    with pytest.raises(ValueError, match=r"prompt_ids must lie in \[0, 10\)"):
        shipped.denoise([10], [0], 4)
    with pytest.raises(ValueError, match="one seed per prompt"):
        shipped.denoise([0, 1], [0], 4)


def test_shipped_backbone_more_steps_approach_the_reference(shipped):
    ids, seeds = list(range(10)), [777 + i for i in range(10)]
    reference = shipped.decode(shipped.denoise(ids, seeds, 12), finetuned=False)
    mse = {
        n: float(
            ((shipped.decode(shipped.denoise(ids, seeds, n), finetuned=False) - reference) / 2).pow(2).mean()
        )
        for n in (4, 8, 11)
    }
    assert mse[4] > mse[8] > mse[11] > 0


def test_finetuned_decoder_beats_plain_on_merged_noisy_latents(shipped):
    ids, seeds = [i % 10 for i in range(20)], [900 + i for i in range(20)]
    reference = shipped.decode(shipped.denoise(ids, seeds, 12), finetuned=False)
    received = shipped.transmit(shipped.denoise(ids, seeds, 6), rho=0.5, sigma=0.1, seed=1)
    mse = {
        ft: float(((shipped.decode(received, finetuned=ft) - reference) / 2).pow(2).mean())
        for ft in (True, False)
    }
    assert mse[True] < 0.8 * mse[False]


def test_shipped_profile_reproduces_from_the_shipped_backbone(shipped):
    shipped_profile = np.load(DEFAULT_PROFILE)
    fresh = build_profile(shipped, steps=(4, 12), rhos=(0.0, 0.5), sigmas=(0.1,))
    rows = [int(np.flatnonzero(shipped_profile["steps"] == n)[0]) for n in (4, 12)]
    cols = [int(np.argmin(np.abs(shipped_profile["rho"] - r))) for r in (0.0, 0.5)]
    k = int(np.argmin(np.abs(shipped_profile["sigma"] - 0.1)))
    for key in ("ln_mse_mean_finetuned", "ln_mse_mean_plain"):
        expected = shipped_profile[key][np.ix_(rows, cols, [k])]
        np.testing.assert_allclose(fresh[key], expected, atol=1e-3)


def test_profile_shows_the_papers_trends():
    """MSE falls with N, rises with rho, and the fine-tuned decoder beats the plain one."""
    with np.load(DEFAULT_PROFILE) as p:
        ft, plain, sigma, rho = p["mse_mean_finetuned"], p["mse_mean_plain"], p["sigma"], p["rho"]
    noisy = sigma > 0
    # falls with N: averaged over rho, at every noise level
    by_steps = ft.mean(axis=1)
    assert np.all(by_steps[0] > by_steps[4]) and np.all(by_steps[4] > by_steps[-1])
    # rises with rho: at every N and noise level, full merging is worse than none
    assert np.all(ft[:, -1, :] > ft[:, 0, :])
    # fine-tuned beats plain in every cell with rho >= 0.25 (16 of 64 tokens merged), by a third on
    # average; unmerged and noiseless, the plain decoder (the reference's own) stays better from N = 6
    heavy = rho >= 0.25 - 1e-9
    assert np.all(ft[:, heavy] < plain[:, heavy])
    assert np.mean(ft[:, heavy, :][..., noisy] / plain[:, heavy, :][..., noisy]) < 0.7
    assert np.all(plain[2:, 0, 0] < ft[2:, 0, 0]) and plain[-1, 0, 0] == 0.0
    # with link noise the plain decoder amplifies what the link adds to the weak detail (Table II):
    # the fine-tuned one is over 3x better in every noisy cell, and >= 10x unmerged at sigma 0.1, N 12
    assert np.all(ft[..., noisy] < plain[..., noisy] / 3)
    k = int(np.argmin(np.abs(sigma - 0.1)))
    assert plain[-1, 0, k] >= 10 * ft[-1, 0, k]


def test_live_backend_compares_against_the_right_reference_and_is_seeded():
    env = gym.make(
        "edgegen/MEG-v0", backend="live", decoder="plain", feature_noise_std=0.0, render_mode="rgb_array"
    )
    env.reset(seed=0)
    _, _, _, _, info = env.step(np.array([1.0, -1.0], np.float32))  # N = 12, rho = 0: the reference itself
    assert info["ln_mse"] == pytest.approx(np.log(1e-10))
    image = env.render()
    assert image.shape == (128, 128, 3) and image.dtype == np.uint8 and image.std() > 10

    def episode():
        live = gym.make("edgegen/MEG-v0", backend="live")
        live.reset(seed=5)
        return [live.step(np.array([-0.5, 0.3], np.float32))[1] for _ in range(2)]

    a, b = episode(), episode()
    assert a == b and all(-12 < r < 30 for r in a)


def test_profile_metadata():
    profile = load_profile()
    meta = profile.metadata
    assert meta["version"] == 1 and meta["latent_shape"] == [4, 16, 16] and meta["samples_per_cell"] == 60
    assert profile.steps.tolist() == list(range(4, 13)) and profile.rho.size >= 16 and profile.sigma.size >= 4


def test_build_vae_down_blocks_set_the_latent_side():
    images = torch.zeros(2, 3, 32, 32)
    for blocks, side in ((2, 16), (3, 8), (4, 4)):  # each block after the first halves the side
        with torch.no_grad():
            latent = build_vae(blocks).encode(images).latent_dist.mean
        assert latent.shape == (2, 4, side, side)
    with pytest.raises(ValueError, match="down_blocks must be 2, 3 or 4, got 5"):
        build_vae(5)


def test_shipped_link_latent_has_unit_variance_and_detail_under_the_link_noise(shipped):
    """The paper's calibration (sigma on a unit-variance latent) and SDXL's weak fine detail."""
    ids, seeds = [i % 10 for i in range(40)], [3_000 + i for i in range(40)]
    latents = shipped.denoise(ids, seeds, 12)
    assert abs(float(latents.std()) - 1.0) < 0.05
    centred = latents - latents.mean(0, keepdim=True)
    power = (torch.fft.fft2(centred).abs() ** 2).mean((0, 1)) / 256
    high = radial_frequency(16, 16) >= 0.4
    assert float(power[high].max()) < 0.1**2 / 10  # every bin above 0.4 cycles/px under sigma^2 / 10
    assert float(power[~high].sum()) > 0.99 * float(power.sum())


def test_shipped_decoders_reproduce_table_ii_plain_breaks_finetuned_resists(shipped):
    """Paper Table II: no merging, sigma = 0.1: the plain decoder's MSE >= 10x the fine-tuned one's."""
    ids, seeds = [i % 10 for i in range(30)], [4_000 + i for i in range(30)]
    latents = shipped.denoise(ids, seeds, 12)
    reference = shipped.decode(latents, finetuned=False)

    def mse(sigma, finetuned):
        received = shipped.transmit(latents, rho=0.0, sigma=sigma, seed=2)
        return float(((shipped.decode(received, finetuned=finetuned) - reference) / 2).pow(2).mean())

    assert mse(0.0, finetuned=False) == 0.0
    assert mse(0.1, finetuned=False) >= 10 * mse(0.1, finetuned=True)
    # the plain decoder degrades with sigma; the fine-tuned one barely (its noiseless error dominates)
    assert mse(0.05, False) < mse(0.1, False) < mse(0.2, False)
    assert mse(0.1, True) < 1.5 * mse(0.0, True)
