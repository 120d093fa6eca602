"""Quality profile builder: MSE of the split pipeline over a (N, rho, sigma) grid.

For a fixed set of prompts and seeds the backbone denoises every ``N`` in [4, 12]; each latent is then
merged at every ``rho``, sent with noise ``sigma`` and decoded by the fine-tuned and by the plain
decoder. The MSE (pixels in [0, 1]) is against the reference image: ``N_max`` steps, no merging,
noiseless, plain decoder, same prompt and seed. Per cell the profile stores the mean and spread of
``ln MSE`` and of ``MSE`` (npz, with JSON metadata); MEG-v0 reads it through ``envs.meg.quality``.

``python -m edgegen.envs.backends.diffusion.profile`` rebuilds the shipped
``envs/assets/meg_quality_profile.npz`` (about 3 minutes on 2 CPU cores) and its figure.
"""

from __future__ import annotations

import argparse
import json
import time
import zlib
from pathlib import Path

import numpy as np
import torch

from edgegen.envs.backends.diffusion.backbone import DEFAULT_BACKBONE_DIR, SplitLatentDiffusion
from edgegen.envs.meg.quality import DEFAULT_PROFILE, PROFILE_VERSION

__all__ = ["build_profile"]

STEPS = tuple(range(4, 13))
RHOS = tuple(float(x) for x in np.linspace(0.0, 0.75, 16))
SIGMAS = (0.0, 0.05, 0.1, 0.2, 0.32)


@torch.no_grad()
def build_profile(
    backbone: SplitLatentDiffusion,
    steps: tuple[int, ...] = STEPS,
    rhos: tuple[float, ...] = RHOS,
    sigmas: tuple[float, ...] = SIGMAS,
    seeds_per_prompt: int = 6,
    first_seed: int = 50_000,
) -> dict[str, np.ndarray]:
    """Run the grid and return the arrays of the profile (see the module docstring)."""
    prompt_ids = [p for p in range(backbone.n_prompts) for _ in range(seeds_per_prompt)]
    seeds = [first_seed + i for i in range(len(prompt_ids))]
    latents = {n: backbone.denoise(prompt_ids, seeds, n) for n in steps}
    reference = (backbone.decode(latents[max(steps)], finetuned=False) + 1) / 2
    shape = (len(steps), len(rhos), len(sigmas))
    out = {
        f"{stat}_{dec}": np.empty(shape)
        for stat in ("ln_mse_mean", "ln_mse_std", "mse_mean", "mse_std")
        for dec in ("finetuned", "plain")
    }
    for i, n in enumerate(steps):
        for j, rho in enumerate(rhos):
            for k, sigma in enumerate(sigmas):
                # One seed per cell: the merge windows and the link noise; same for both decoders.
                seed = zlib.crc32(f"{n}/{rho:.6f}/{sigma:.6f}".encode())
                received = backbone.transmit(latents[n], rho, sigma, seed=seed)
                for dec, finetuned in (("finetuned", True), ("plain", False)):
                    image = (backbone.decode(received, finetuned=finetuned) + 1) / 2
                    mse = ((image - reference) ** 2).mean(dim=(1, 2, 3)).double().numpy()
                    ln_mse = np.log(np.maximum(mse, 1e-10))
                    out[f"ln_mse_mean_{dec}"][i, j, k] = ln_mse.mean()
                    out[f"ln_mse_std_{dec}"][i, j, k] = ln_mse.std(ddof=1)
                    out[f"mse_mean_{dec}"][i, j, k] = mse.mean()
                    out[f"mse_std_{dec}"][i, j, k] = mse.std(ddof=1)
    out["steps"] = np.asarray(steps, dtype=np.int64)
    out["rho"] = np.asarray(rhos)
    out["sigma"] = np.asarray(sigmas)
    out["prompt_ids"] = np.asarray(prompt_ids)
    out["seeds"] = np.asarray(seeds)
    return out


def plot_profile(profile: dict[str, np.ndarray], path: Path, sigma_index: int = 2) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps, rhos, sigma = profile["steps"], profile["rho"], profile["sigma"][sigma_index]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for j in (0, 5, 10, 15):
        for dec, style in (("finetuned", "-"), ("plain", ":")):
            axes[0].plot(
                steps,
                profile[f"mse_mean_{dec}"][:, j, sigma_index],
                style,
                marker="o",
                ms=3,
                label=f"rho={rhos[j]:.2f} {dec}",
            )
    axes[0].set(
        xlabel="denoising steps N", ylabel="MSE to reference", yscale="log", title=f"MSE vs N (sigma={sigma})"
    )
    for i in (0, 4, 8):
        for dec, style in (("finetuned", "-"), ("plain", ":")):
            axes[1].plot(
                rhos,
                profile[f"mse_mean_{dec}"][i, :, sigma_index],
                style,
                marker="o",
                ms=3,
                label=f"N={steps[i]} {dec}",
            )
    axes[1].set(
        xlabel="merge ratio rho", ylabel="MSE to reference", yscale="log", title=f"MSE vs rho (sigma={sigma})"
    )
    for ax in axes:
        ax.legend(fontsize=6)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backbone", type=Path, default=DEFAULT_BACKBONE_DIR)
    parser.add_argument("--out", type=Path, default=DEFAULT_PROFILE)
    parser.add_argument("--figure", type=Path, default=Path("docs/figures/meg_quality_profile.png"))
    parser.add_argument("--seeds-per-prompt", type=int, default=6)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    backbone = SplitLatentDiffusion.from_pretrained(args.backbone, torch_dtype=torch.float32)
    profile = build_profile(backbone, seeds_per_prompt=args.seeds_per_prompt)
    metadata = {
        "version": PROFILE_VERSION,
        "backend": str(args.backbone.name),
        "image_size": 32,
        "latent_shape": list(backbone.latent_shape),
        "reference": "N_max steps, rho = 0, sigma = 0, plain decoder; same prompt and seed",
        "mse_units": "pixels in [0, 1]",
        "samples_per_cell": len(profile["seeds"]),
        "generated_by": "python -m edgegen.envs.backends.diffusion.profile",
        "torch": torch.__version__,
        "seconds": round(time.perf_counter() - start, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, metadata=np.asarray(json.dumps(metadata)), **profile)  # type: ignore[arg-type]
    args.figure.parent.mkdir(parents=True, exist_ok=True)
    plot_profile(profile, args.figure)
    print(f"wrote {args.out} and {args.figure} in {metadata['seconds']} s")


if __name__ == "__main__":
    main()
