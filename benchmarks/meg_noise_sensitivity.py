"""MEG-v0's link noise against the shipped decoders: why the paper's Table II effect does not appear.

The paper (Table II) reports, at no merging and link noise sigma = 0.1, MSE 0.2842 for the plain SDXL
decoder against 0.0106 for the one fine-tuned with noise (27x). Measured here on the shipped backbone
(N = 12, rho = 0, 60 prompts x seeds, noise on the scaled latent of unit variance, MSE against the
noiseless plain decoding): the plain and the fine-tuned decoder's MSE for several sigma; the VAE's
posterior std in the same scaled units (the noise the plain decoder saw in every training step);
and, with ``--retrain-iters N``, a copy of the plain decoder trained N steps on posterior means only
(no sampling noise), to see whether removing that noise makes it sensitive.

    python benchmarks/meg_noise_sensitivity.py [--retrain-iters 400]
"""

from __future__ import annotations

import argparse
import copy
import sys

import numpy as np
import torch
import torch.nn.functional as F
from harness import record

from edgegen.envs.backends.data import shape_images
from edgegen.envs.backends.diffusion.backbone import DEFAULT_BACKBONE_DIR, SplitLatentDiffusion

SIGMAS = (0.0, 0.05, 0.1, 0.2, 0.32, 0.5, 1.0)


def mean_trained_decoder(vae, iters: int):
    """A copy of the plain decoder trained on posterior means (no posterior sampling noise)."""
    torch.manual_seed(0)
    images = torch.from_numpy(shape_images(np.arange(3000) % 10, seed=1))
    with torch.no_grad():
        means = torch.cat([vae.encode(x).latent_dist.mean for x in images.split(256)])
    decoder = copy.deepcopy(vae).requires_grad_(False)
    params = [*decoder.decoder.parameters(), *decoder.post_quant_conv.parameters()]
    for p in params:
        p.requires_grad_(True)
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


@torch.no_grad()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--retrain-iters", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(2)
    backbone = SplitLatentDiffusion.from_pretrained(DEFAULT_BACKBONE_DIR, torch_dtype=torch.float32)
    vae, scale = backbone.vae, backbone.vae.config.scaling_factor
    images = torch.from_numpy(shape_images(np.arange(256) % 10, seed=3))
    posterior = vae.encode(images).latent_dist
    print(
        f"VAE posterior std in scaled latent units: mean {(posterior.std * scale).mean().item():.3f} "
        f"(the scaled latent's std: {(posterior.mean * scale).std().item():.3f})\n"
    )
    ids = [p for p in range(backbone.n_prompts) for _ in range(6)]
    latents = backbone.denoise(ids, [50_000 + i for i in range(len(ids))], 12)
    decoders = {"plain": vae, "fine-tuned (shipped)": backbone.merging_vae}
    if args.retrain_iters:
        with torch.enable_grad():
            decoders[f"plain, {args.retrain_iters} steps on posterior means"] = mean_trained_decoder(
                vae, args.retrain_iters
            )
    reference = (vae.decode(latents / scale).sample + 1) / 2
    print("| decoder | " + " | ".join(f"MSE at sigma {s:g}" for s in SIGMAS) + " |")
    print("|---|" + "---|" * len(SIGMAS))
    table = {}
    for name, decoder in decoders.items():
        row = []
        for sigma in SIGMAS:
            received = backbone.transmit(latents, 0.0, sigma, seed=7)
            image = (decoder.decode(received / scale).sample + 1) / 2
            row.append(((image - reference) ** 2).mean().item())
        table[name] = row
        print(f"| {name} | " + " | ".join(f"{v:.5f}" for v in row) + " |")
    k = SIGMAS.index(0.1)
    ratio = table["plain"][k] / table["fine-tuned (shipped)"][k]
    print(f"\nplain / fine-tuned MSE at sigma 0.1: {ratio:.2f} (paper: 26.8; target >= 10)")


if __name__ == "__main__":
    with record("meg_noise_sensitivity", "MEG-v0: link noise against the shipped decoders (paper Table II)"):
        main()
