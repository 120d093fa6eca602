"""MEG-v0's link noise against the shipped decoders (the paper's Table II effect) and how it arises.

The paper (Table II) reports, at no merging and link noise sigma = 0.1, MSE 0.2842 for the plain SDXL
decoder against 0.0106 for the one fine-tuned with noise (27x). Measured here on the shipped backbone
(N = 12, rho = 0, 60 prompts x seeds, noise on the transmitted latent of unit variance, MSE against
the noiseless plain decoding): the plain and the fine-tuned decoder's MSE for several sigma, each
through its receive gain (``latent_spectrum``); the VAE's posterior std in the U-Net latent's scaled
units (the noise the plain decoder saw in every training step); and, with ``--retrain-iters N``, a
copy of the plain decoder trained N steps on posterior means only (no sampling noise). Until the
fourteenth session the backbone sent the U-Net's latent as it is, and the effect was reversed (the
records of the runs below on that backbone are in docs/experiments.md).

``--vae-variants`` goes one step further and trains fresh autoencoders of the shipped architecture
(``--vae-iters`` steps each, on one thread): one with the KL weight of Stable Diffusion's VAE (1e-6)
and one deterministic (decoding the posterior mean, so its decoder never sees latent noise). For each
it measures the plain decoder's MSE under link noise and that of a copy fine-tuned with the shipped
noise augmentation (``--finetune-iters`` steps), both against the plain decoder's noiseless image of
held-out images, and prints ``sigma^2 x`` the image's pixel variance: the error of a decoder that
passes latent noise through at the latent's signal-to-noise ratio, neither amplifying nor removing it.

``--compression-probe`` (recorded apart, as ``meg_noise_compression``) asks whether a latent of far
fewer numbers than the image, as SDXL's (48x), gives the effect: deterministic autoencoders of the
shipped family with three and four down blocks (latents 4 x 8 x 8, 12x; 4 x 4 x 4, 48x; the shipped
one is 4 x 16 x 16, 3x), each with a noise-fine-tuned copy, measured as above.

``--spectrum`` (recorded as ``meg_noise_spectrum``) shows what a per-frequency denoising decoder could
do on the shipped transmitted latent: per band of its 2-D spatial frequency, the denoised latents'
signal power S (N = 12, no merging) and the plain decoder's MSE from sigma = 0.1 noise restricted to
that band; a decoder that removed each band's noise as a Wiener filter would (keeping S / (S +
sigma^2) of it, bin by bin, averaged over the band's bins) leaves the Wiener-weighted sum. Plain /
that sum is the plain-to-fine-tuned ratio such a linear denoiser would reach (it ignores the signal it
loses): the paper's >= 10x needs the plain decoder's gain where the latent's signal is under the noise.

    python benchmarks/meg_noise_sensitivity.py [--retrain-iters 400] [--vae-variants]
    python benchmarks/meg_noise_sensitivity.py --compression-probe [--vae-iters 1500]
    python benchmarks/meg_noise_sensitivity.py --spectrum
    python benchmarks/meg_noise_sensitivity.py --gain-sweep

``--gain-sweep`` (recorded as ``meg_noise_gain_sweep``) is how the shipped link gain was chosen: for
each (gain above the band, band) setting, the link gain fitted on the shipped U-Net's latents, a
decoder fine-tuned as ``train.finetune_decoder`` does (500 steps on 256 pool latents per N, with its
receive gain), and plain / fine-tuned MSE at N = 12, rho = 0 on 60 held-out samples.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import sys

import numpy as np
import torch
import torch.nn.functional as F
from harness import record

from edgegen.envs.backends.data import shape_images
from edgegen.envs.backends.diffusion.backbone import DEFAULT_BACKBONE_DIR, SplitLatentDiffusion, build_vae
from edgegen.envs.backends.diffusion.latent_spectrum import apply_gain, radial_frequency
from edgegen.envs.backends.diffusion.train import (
    augmentation_sigma,
    cosine_lr,
    encode_latents,
    link_and_decoder,
    pool_latents,
    train_vae,
    trainable_decoder_copy,
)

SIGMAS = (0.0, 0.05, 0.1, 0.2, 0.32, 0.5, 1.0)


def mean_trained_decoder(vae, iters: int):
    """A copy of the plain decoder trained on posterior means (no posterior sampling noise)."""
    torch.manual_seed(0)
    images = torch.from_numpy(shape_images(np.arange(3000) % 10, seed=1))
    with torch.no_grad():
        means = torch.cat([vae.encode(x).latent_dist.mean for x in images.split(256)])
    decoder, params = trainable_decoder_copy(vae)
    opt = torch.optim.AdamW(params, lr=3e-4)
    for it in range(iters):
        idx = torch.randint(0, len(images), (32,))
        loss = F.mse_loss(decoder.decode(means[idx]).sample, images[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        if it % 100 == 0:
            print(f"[decoder on means] iter {it} recon mse {loss.item():.5f}", file=sys.stderr, flush=True)
    return decoder.eval()


def noise_augmented_copy(vae, latents: torch.Tensor, scale: float, iters: int):
    """A copy of ``vae``'s decoder fine-tuned as the shipped one is, on noisy latents.

    As in ``train.finetune_decoder`` (no merging here): 20 % of the steps noiseless, the rest with
    ``sigma ~ U(0.05, 0.32)``, towards the plain decoder's noiseless image.
    """
    with torch.no_grad():
        targets = torch.cat([vae.decode(z / scale).sample for z in latents.split(256)])
    tuned, params = trainable_decoder_copy(vae)
    opt = torch.optim.AdamW(params, lr=2e-4, weight_decay=0.0)
    for it in range(iters):
        cosine_lr(opt, 2e-4, it, iters, warmup=30)
        idx = torch.randint(0, len(latents), (32,))
        sigma = augmentation_sigma()
        received = latents[idx] + sigma * torch.randn_like(latents[idx])
        loss = F.mse_loss(tuned.decode(received / scale).sample, targets[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
    return tuned.eval().requires_grad_(False)


VAE_VARIANTS = {"KL weight 1e-6": (1e-6, True, build_vae), "deterministic": (0.0, False, build_vae)}
COMPRESSION_VARIANTS = {
    "deterministic, 4 x 8 x 8 latent (12x)": (0.0, False, functools.partial(build_vae, down_blocks=3)),
    "deterministic, 4 x 4 x 4 latent (48x)": (0.0, False, functools.partial(build_vae, down_blocks=4)),
}


def vae_variants(vae_iters: int, finetune_iters: int, variants: dict = VAE_VARIANTS) -> dict:
    """Fresh autoencoders (by default KL 1e-6; deterministic), their plain and noise-fine-tuned decoders."""
    torch.set_num_threads(1)
    images = torch.from_numpy(shape_images(np.arange(6000) % 10, seed=0))
    held_out = torch.from_numpy(shape_images(np.arange(200) % 10, seed=77))
    results = {}
    for name, (kl_weight, sample, build) in variants.items():
        torch.manual_seed(0)
        # train_vae logs its progress on stdout, which is the record: send it to stderr
        with torch.enable_grad(), contextlib.redirect_stdout(sys.stderr):
            vae = train_vae(
                images, vae_iters, 32, {}, kl_weight=kl_weight, sample_posterior=sample, build=build
            )
        with torch.no_grad():
            recon = (
                (vae.decode(vae.encode(held_out).latent_dist.mean).sample - held_out) ** 2
            ).mean().item() / 4
        raw = encode_latents(vae, images[:3000])
        scale = float(1.0 / raw.std())
        posterior_std = (vae.encode(images[:256]).latent_dist.std * scale).mean().item()
        with torch.enable_grad():
            tuned = noise_augmented_copy(vae, raw * scale, scale, finetune_iters)
        latents = vae.encode(held_out).latent_dist.mean * scale
        clean = (vae.decode(latents / scale).sample + 1) / 2
        row: dict = {"posterior_std_scaled": posterior_std, "pixel_var": clean.var().item(), "recon": recon}
        for label, decoder in (("plain", vae), ("noise-fine-tuned", tuned)):
            generator = torch.Generator().manual_seed(7)
            mses = []
            for sigma in SIGMAS:
                noise = torch.randn(latents.shape, generator=generator)
                image = (decoder.decode((latents + sigma * noise) / scale).sample + 1) / 2
                mses.append(((image - clean) ** 2).mean().item())
            row[label] = mses
        results[name] = row
    print(f"\nFresh autoencoders ({vae_iters} steps; fine-tuned copies {finetune_iters} steps), MSE on")
    print("200 held-out images against the plain decoder's noiseless image (pixels in [0, 1]):\n")
    print("| autoencoder | posterior std | decoder | " + " | ".join(f"sigma {s:g}" for s in SIGMAS) + " |")
    print("|---|---|---|" + "---|" * len(SIGMAS))
    for name, row in results.items():
        for label in ("plain", "noise-fine-tuned"):
            cells = " | ".join(f"{v:.5f}" for v in row[label])
            print(f"| {name} | {row['posterior_std_scaled']:.3f} | {label} | {cells} |")
        cells = " | ".join(f"{s * s * row['pixel_var']:.5f}" for s in SIGMAS)
        print(f"| {name} | | sigma^2 x pixel variance | {cells} |")
    print()
    k = SIGMAS.index(0.1)
    for name, row in results.items():
        ratio = row["plain"][k] / row["noise-fine-tuned"][k]
        print(
            f"{name}: plain / fine-tuned MSE at sigma 0.1: {ratio:.2f} (target >= 10); held-out "
            f"reconstruction MSE {row['recon']:.5f}"
        )
    return results


# cycles / latent pixel; 0.3-0.4 is the shipped link gain's transition (latent_spectrum.DETAIL_BANDS)
SPECTRUM_BANDS = ((0.0, 0.1), (0.1, 0.2), (0.2, 0.3), (0.3, 0.4), (0.4, 0.8))


@torch.no_grad()
def spectrum(backbone: SplitLatentDiffusion, sigma: float = 0.1) -> float:
    """Per frequency band: latent signal power, the plain decoder's MSE from that band's noise."""
    ids = [p for p in range(backbone.n_prompts) for _ in range(12)]
    latents = backbone.denoise(ids, [50_000 + i for i in range(len(ids))], 12)  # the transmitted latent
    side = latents.shape[-1]
    power = (torch.fft.fft2(latents - latents.mean(0, keepdim=True)).abs() ** 2).mean((0, 1)) / side**2
    radius = radial_frequency(side, side)
    reference = backbone.decode(latents, finetuned=False)
    generator = torch.Generator().manual_seed(0)
    plain_total, wiener_total = 0.0, 0.0
    print(
        f"Shipped transmitted latent ({side} x {side} per channel), 120 denoised latents, sigma = {sigma}; "
        "pixels in [0, 1]\n"
    )
    print(
        "| band [cycles / latent px] | bins | signal power S | sigma^2 | plain MSE from the band's noise "
        "| Wiener-weighted |"
    )
    print("|---|---|---|---|---|---|")
    for low, high in SPECTRUM_BANDS:
        mask = ((radius >= low) & (radius < high)).to(latents.dtype)
        noise = torch.randn(latents.shape, generator=generator)
        band_noise = sigma * torch.fft.ifft2(torch.fft.fft2(noise) * mask).real  # that band of white noise
        noisy = backbone.decode(latents + band_noise, finetuned=False)
        mse = ((noisy - reference) ** 2).mean().item() / 4
        signal = float((power * mask).sum() / mask.sum())
        in_band = power[mask.bool()]
        kept = float((in_band / (in_band + sigma**2)).mean())  # a Wiener filter bin by bin
        plain_total, wiener_total = plain_total + mse, wiener_total + mse * kept
        print(
            f"| {low}-{high} | {int(mask.sum())} | {signal:.4f} | {sigma**2:.4f} | {mse:.6f} "
            f"| {mse * kept:.6f} |"
        )
    ratio = plain_total / wiener_total
    print(
        f"\nplain decoder, all bands: {plain_total:.6f}; a per-frequency Wiener decoder would leave "
        f"{wiener_total:.6f} of it: ratio {ratio:.2f} (target >= 10)"
    )
    return ratio


def _sent_mse(
    pipe: SplitLatentDiffusion, sent: torch.Tensor, reference: torch.Tensor, sigma: float, finetuned: bool
) -> float:
    """MSE (pixels in [0, 1]) of ``sent`` through the link (rho 0, ``sigma``) and one of the decoders."""
    image = (pipe.decode(pipe.transmit(sent, 0.0, sigma, seed=7), finetuned=finetuned) + 1) / 2
    return ((image - reference) ** 2).mean().item()


GAIN_SETTINGS = ((0.05, (0.2, 0.3)), (0.05, (0.3, 0.4)), (0.03, (0.3, 0.4)))  # (detail scale, band)


@torch.no_grad()
def gain_sweep(backbone: SplitLatentDiffusion, iters: int = 500, pool: int = 256) -> None:
    """Plain / fine-tuned MSE at sigma 0.1 for each link gain of ``GAIN_SETTINGS`` (see the docstring)."""
    unet_pipe = SplitLatentDiffusion(backbone.unet, backbone.vae, backbone.scheduler, backbone.prompt_embeds)
    z = pool_latents(unet_pipe, pool)
    held_ids = [p for p in range(backbone.n_prompts) for _ in range(6)]
    held = unet_pipe.denoise(held_ids, [50_000 + i for i in range(len(held_ids))], 12)
    held_reference = (unet_pipe.decode(held, finetuned=False) + 1) / 2
    print(f"Decoders fine-tuned {iters} steps on {pool} pool latents per N; MSE at N = 12, rho = 0 on")
    print(
        f"{len(held_ids)} held-out samples against the plain decoder's noiseless image (pixels in [0, 1]):\n"
    )
    print(
        "| gain above the band | band [cycles / latent px] | unit-variance factor | plain, sigma 0.1 "
        "| fine-tuned, sigma 0 | fine-tuned, sigma 0.1 | ratio at 0.1 |"
    )
    print("|---|---|---|---|---|---|---|")
    for detail_scale, bands in GAIN_SETTINGS:
        torch.manual_seed(0)
        with torch.enable_grad(), contextlib.redirect_stdout(sys.stderr):
            pipe = link_and_decoder(unet_pipe, z, iters, {}, detail_scale, bands)
        assert pipe.link_gain is not None
        gain = pipe.link_gain
        sent = apply_gain(held, gain)

        plain, tuned_clean, tuned_noisy = (
            _sent_mse(pipe, sent, held_reference, sigma, finetuned)
            for sigma, finetuned in ((0.1, False), (0.0, True), (0.1, True))
        )
        print(
            f"| {detail_scale:g} | {bands[0]:g}-{bands[1]:g} | {float(gain[0, 0]):.3f} | {plain:.5f} "
            f"| {tuned_clean:.5f} | {tuned_noisy:.5f} | {plain / tuned_noisy:.2f} |",
            flush=True,
        )


@torch.no_grad()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--retrain-iters", type=int, default=0)
    parser.add_argument("--vae-variants", action="store_true")
    parser.add_argument("--vae-iters", type=int, default=700)
    parser.add_argument("--finetune-iters", type=int, default=600)
    parser.add_argument("--compression-probe", action="store_true")
    parser.add_argument("--spectrum", action="store_true")
    parser.add_argument("--gain-sweep", action="store_true")
    args = parser.parse_args()
    if args.compression_probe:
        vae_variants(args.vae_iters, args.finetune_iters, COMPRESSION_VARIANTS)
        return
    torch.set_num_threads(2)
    backbone = SplitLatentDiffusion.from_pretrained(DEFAULT_BACKBONE_DIR, torch_dtype=torch.float32)
    if args.spectrum:
        spectrum(backbone)
        return
    if args.gain_sweep:
        gain_sweep(backbone)
        return
    vae, scale = backbone.vae, backbone.vae.config.scaling_factor
    images = torch.from_numpy(shape_images(np.arange(256) % 10, seed=3))
    posterior = vae.encode(images).latent_dist
    print(
        f"VAE posterior std in scaled latent units: mean {(posterior.std * scale).mean().item():.3f} "
        f"(the scaled latent's std: {(posterior.mean * scale).std().item():.3f})\n"
    )
    ids = [p for p in range(backbone.n_prompts) for _ in range(6)]
    latents = backbone.denoise(ids, [50_000 + i for i in range(len(ids))], 12)

    def shipped(finetuned: bool):
        return lambda received: backbone.decode(received, finetuned=finetuned)

    decoders = {"plain": shipped(False), "fine-tuned (shipped)": shipped(True)}
    if args.retrain_iters:
        with torch.enable_grad():
            retrained = mean_trained_decoder(vae, args.retrain_iters)
        plain_gain = backbone.receive_gain(False)

        def on_means(received: torch.Tensor) -> torch.Tensor:
            restored = received if plain_gain is None else apply_gain(received, plain_gain)
            return retrained.decode(restored / scale).sample.clamp(-1, 1)

        decoders[f"plain, {args.retrain_iters} steps on posterior means"] = on_means
    reference = (backbone.decode(latents, finetuned=False) + 1) / 2
    print("| decoder | " + " | ".join(f"MSE at sigma {s:g}" for s in SIGMAS) + " |")
    print("|---|" + "---|" * len(SIGMAS))
    table = {}
    for name, decode in decoders.items():
        row = []
        for sigma in SIGMAS:
            received = backbone.transmit(latents, 0.0, sigma, seed=7)
            image = (decode(received) + 1) / 2
            row.append(((image - reference) ** 2).mean().item())
        table[name] = row
        print(f"| {name} | " + " | ".join(f"{v:.5f}" for v in row) + " |")
    k = SIGMAS.index(0.1)
    ratio = table["plain"][k] / table["fine-tuned (shipped)"][k]
    print(f"\nplain / fine-tuned MSE at sigma 0.1: {ratio:.2f} (paper: 26.8; target >= 10)")
    if args.vae_variants:
        vae_variants(args.vae_iters, args.finetune_iters)


if __name__ == "__main__":
    if "--gain-sweep" in sys.argv:
        with record(
            "meg_noise_gain_sweep", "MEG-v0: choosing the link gain (plain / fine-tuned at sigma 0.1)"
        ):
            main()
    elif "--spectrum" in sys.argv:
        with record("meg_noise_spectrum", "MEG-v0: the shipped latent's spectrum against link noise"):
            main()
    elif "--compression-probe" in sys.argv:
        with record("meg_noise_compression", "MEG-v0: link noise against high-compression autoencoders"):
            main()
    else:
        with record(
            "meg_noise_sensitivity", "MEG-v0: link noise against the shipped decoders (paper Table II)"
        ):
            main()
