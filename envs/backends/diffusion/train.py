"""Offline stage of MEG: train the shipped backbone on procedural shapes, on a CPU.

Stages (``python -m edgegen.envs.backends.diffusion.train``, about 20 minutes on 2 CPU cores):

1. VAE: a small ``AutoencoderKL`` (32^2 images <-> 4 x 16 x 16 latents), reconstruction + tiny KL.
2. U-Net: class-conditional rectified flow on the scaled latents (velocity target ``noise - x0``),
   then step distillation: for random ``N`` in [4, 12] the student's ``N``-step Euler sample is
   pulled, by back-propagation through all ``N`` steps, to the 32-step sample of the frozen teacher
   from the same noise, so that every ``N`` in [4, 12] gives a usable image.
3. Link gain (``latent_spectrum``): the transmitted latent carries spatial frequencies above
   ``DETAIL_BANDS`` at ``DETAIL_SCALE`` of their scale, rescaled to unit variance on the pool's
   ``N_max`` latents; the plain decoder undoes it exactly.
4. Merging decoder: a copy of the decoder, with a learnt per-frequency receive gain (started at the
   plain decoder's), fine-tuned to map latents that were denoised for random ``N``, merged at random
   ``rho`` in [0, 0.75] and sent with noise ``sigma ~ U(0.05, 0.32)`` (or noiseless) to the reference
   image (``N_max = 12`` steps, no merging, noiseless, plain decoder).

The result is written (fp16 safetensors; the gains in fp32) to ``envs/assets/meg_backbone`` with
``training.json``. ``--from-backbone DIR`` reuses the autoencoder, U-Net and prompt embeddings of a
built backbone and runs stages 3 and 4 only (a few minutes).
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from edgegen.envs.backends.data import CLASS_NAMES, shape_images
from edgegen.envs.backends.diffusion.backbone import (
    DEFAULT_BACKBONE_DIR,
    PROMPT_DIM,
    SplitLatentDiffusion,
    build_scheduler,
    build_unet,
    build_vae,
)
from edgegen.envs.backends.diffusion.latent_spectrum import (
    DETAIL_BANDS,
    apply_gain,
    detail_gain,
    fold_gain,
    folded_shape,
)
from edgegen.envs.backends.diffusion.merging import merge_tokens, unmerge_tokens

N_MIN, N_MAX, TEACHER_STEPS = 4, 12, 32
DETAIL_SCALE = 0.03
"""Fraction of their scale at which the latent's frequencies above ``DETAIL_BANDS[1]`` are sent."""


def cosine_lr(
    optimizer: torch.optim.Optimizer, base_lr: float, step: int, total: int, warmup: int = 50
) -> None:
    """Linear warm-up then cosine decay of every group's learning rate (set in place).

    A group's optional ``"lr_scale"`` multiplies ``base_lr`` for that group.
    """
    lr = base_lr * min(1.0, (step + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * step / total))
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)


def train_vae(
    images: torch.Tensor,
    iters: int,
    batch: int,
    log: dict,
    kl_weight: float = 1e-4,
    sample_posterior: bool = True,
    build: Any = build_vae,
) -> Any:
    """Stage 1: the autoencoder, reconstruction MSE plus a tiny KL term.

    ``sample_posterior=False`` decodes the posterior mean (a deterministic autoencoder: the decoder
    never sees latent noise in training); ``benchmarks/meg_noise_sensitivity.py --vae-variants`` uses
    it to test whether that makes the plain decoder sensitive to link noise, and ``build`` (a
    function returning an untrained ``AutoencoderKL``) to try other architectures.
    """
    vae = build()
    opt = torch.optim.AdamW(vae.parameters(), lr=1e-3, weight_decay=0.0)
    losses = []
    for it in range(iters):
        cosine_lr(opt, 1e-3, it, iters)
        x = images[torch.randint(0, images.shape[0], (batch,))]
        posterior = vae.encode(x).latent_dist
        recon = vae.decode(posterior.sample() if sample_posterior else posterior.mean).sample
        kl = posterior.kl().mean() / x[0].numel()
        loss = F.mse_loss(recon, x) + kl_weight * kl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        opt.step()
        losses.append(F.mse_loss(recon, x).item())
        if it % 100 == 0 or it == iters - 1:
            print(f"[vae] iter {it:5d}  recon mse {np.mean(losses[-100:]):.5f}", flush=True)
    log["vae_recon_mse_last100"] = float(np.mean(losses[-100:]))
    return vae.eval()


@torch.no_grad()
def encode_latents(vae: Any, images: torch.Tensor) -> torch.Tensor:
    """Posterior means of the images (unscaled latents)."""
    return torch.cat([vae.encode(x).latent_dist.mean for x in images.split(256)])


def euler_sample(unet, scheduler, noise, cond, num_steps: int) -> torch.Tensor:
    """Differentiable rectified-flow Euler sampling (the same update as the scheduler's ``step``)."""
    scheduler.set_timesteps(num_steps)
    sigmas = scheduler.sigmas.to(noise.dtype)
    x = noise
    for i, t in enumerate(scheduler.timesteps):
        v = unet(x, t.expand(x.shape[0]), encoder_hidden_states=cond).sample
        x = x + (sigmas[i + 1] - sigmas[i]) * v
    return x


def train_flow(latents: torch.Tensor, labels: torch.Tensor, iters: int, batch: int, log: dict):
    """Stage 2a: class-conditional rectified flow; the prompt embeddings are learnt with the U-Net."""
    unet = build_unet()
    embeds = torch.nn.Parameter(torch.randn(len(CLASS_NAMES), 1, PROMPT_DIM) * 0.5)
    params = [*unet.parameters(), embeds]
    opt = torch.optim.AdamW(params, lr=1e-3, weight_decay=0.0)
    losses = []
    for it in range(iters):
        cosine_lr(opt, 1e-3, it, iters)
        idx = torch.randint(0, latents.shape[0], (batch,))
        x0, cond = latents[idx], embeds[labels[idx]]
        noise = torch.randn_like(x0)
        sigma = torch.sigmoid(torch.randn(batch))  # logit-normal: more weight on mid noise levels
        xt = sigma[:, None, None, None] * noise + (1 - sigma[:, None, None, None]) * x0
        pred = unet(xt, sigma * 1000, encoder_hidden_states=cond).sample
        loss = F.mse_loss(pred, noise - x0)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        losses.append(loss.item())
        if it % 100 == 0 or it == iters - 1:
            print(f"[flow] iter {it:5d}  v-loss {np.mean(losses[-100:]):.4f}", flush=True)
    log["flow_loss_last100"] = float(np.mean(losses[-100:]))
    return unet.eval(), embeds.detach()


def distill_steps(unet, embeds, iters: int, batch: int, pool: int, log: dict):
    """Pull every N-step sample (N in [4, 12]) towards the teacher's 32-step sample."""
    scheduler = build_scheduler()
    teacher = copy.deepcopy(unet).eval().requires_grad_(False)
    noise_pool = torch.randn(pool, unet.config.in_channels, *(unet.config.sample_size,) * 2)
    label_pool = torch.randint(0, len(CLASS_NAMES), (pool,))
    with torch.no_grad():
        target_pool = torch.cat(
            [
                euler_sample(teacher, scheduler, n, embeds[lab], TEACHER_STEPS)
                for n, lab in zip(noise_pool.split(256), label_pool.split(256), strict=True)
            ]
        )
    student = unet.train()
    opt = torch.optim.AdamW(student.parameters(), lr=1e-4, weight_decay=0.0)
    losses: dict[int, list[float]] = {n: [] for n in range(N_MIN, N_MAX + 1)}
    for it in range(iters):
        cosine_lr(opt, 1e-4, it, iters, warmup=20)
        n_steps = int(torch.randint(N_MIN, N_MAX + 1, ()))
        idx = torch.randint(0, pool, (batch,))
        out = euler_sample(student, scheduler, noise_pool[idx], embeds[label_pool[idx]], n_steps)
        loss = F.mse_loss(out, target_pool[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(student.parameters(), 1.0)
        opt.step()
        losses[n_steps].append(loss.item())
        if it % 20 == 0 or it == iters - 1:
            print(
                f"[distill] iter {it:4d}  N={n_steps:2d}  latent mse to teacher {loss.item():.4f}", flush=True
            )
    log["distill_mse_by_steps"] = {n: float(np.mean(v[-5:])) for n, v in losses.items() if v}
    return student.eval()


def trainable_decoder_copy(vae) -> tuple[Any, list[torch.nn.Parameter]]:
    """A copy of ``vae`` whose decoder and post-quant conv train, and those parameters."""
    tuned = copy.deepcopy(vae).requires_grad_(False)
    params = [*tuned.decoder.parameters(), *tuned.post_quant_conv.parameters()]
    for p in params:
        p.requires_grad_(True)
    return tuned, params


def augmentation_sigma() -> float:
    """Link noise of one decoder fine-tuning step: none in 20 % of the steps, else ``U(0.05, 0.32)``."""
    return 0.0 if torch.rand(()) < 0.2 else float(0.05 + 0.27 * torch.rand(()))


@torch.no_grad()
def link_gain_for(
    latents: torch.Tensor, detail_scale: float = DETAIL_SCALE, bands: tuple[float, float] = DETAIL_BANDS
) -> torch.Tensor:
    """``c a(f)`` for U-Net latents ``(B, C, H, W)``: ``c`` gives the transmitted latents unit std."""
    height, width = latents.shape[-2:]
    gain = detail_gain(height, width, detail_scale, *bands)
    return gain / apply_gain(latents, gain).std()


def finetune_decoder(
    vae,
    pipe_latents: dict[int, torch.Tensor],
    references: torch.Tensor,
    iters: int,
    batch: int,
    log,
    link_gain: torch.Tensor | None = None,
):
    """Decoder (and post-quant conv) fine-tuned on merged, noisy latents towards the reference image.

    With a ``link_gain`` the decoder also learns its per-frequency, per-channel receive gain (log
    parametrised, even in frequency, started at ``1 / link_gain``). Returns the autoencoder and that
    gain (``None`` without a link gain).
    """
    merging_vae, params = trainable_decoder_copy(vae)
    groups: list[dict[str, Any]] = [{"params": params}]
    log_gain = None
    if link_gain is not None:
        height, width = link_gain.shape
        rows, cols = folded_shape(height, width)
        start = -torch.log(link_gain[:rows, :cols]).expand(vae.config.latent_channels, -1, -1)
        log_gain = torch.nn.Parameter(start.clone())
        groups.append({"params": [log_gain], "lr_scale": 100.0})  # log gains move ~0.02 a step
    opt = torch.optim.AdamW(groups, lr=2e-4, weight_decay=0.0)
    scale = vae.config.scaling_factor
    generator = torch.Generator().manual_seed(1234)
    losses = []
    pool = references.shape[0]
    for it in range(iters):
        cosine_lr(opt, 2e-4, it, iters, warmup=30)
        n_steps = int(torch.randint(N_MIN, N_MAX + 1, ()))
        rho = float(torch.rand(()) * 0.75)
        sigma = augmentation_sigma()
        idx = torch.randint(0, pool, (batch,))
        with torch.no_grad():
            merged = merge_tokens(pipe_latents[n_steps][idx], rho, generator=generator)
            received = unmerge_tokens(merged.add_noise(sigma, generator=generator))
        if log_gain is not None:
            received = apply_gain(received, fold_gain(log_gain.exp(), *received.shape[-2:]))
        image = merging_vae.decode(received / scale).sample
        loss = F.mse_loss(image, references[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)  # the decoder's weights; the gain is clipped by Adam
        opt.step()
        losses.append(loss.item())
        if it % 50 == 0 or it == iters - 1:
            print(f"[decoder] iter {it:4d}  image mse {np.mean(losses[-50:]):.5f}", flush=True)
    log["decoder_mse_last50"] = float(np.mean(losses[-50:]))
    receive_gain = None
    if log_gain is not None and link_gain is not None:
        receive_gain = fold_gain(log_gain.detach().exp(), *link_gain.shape)
    return merging_vae.eval().requires_grad_(False), receive_gain


def pool_latents(pipe: SplitLatentDiffusion, pool: int) -> dict[int, torch.Tensor]:
    """The pipeline's latents of ``pool`` fresh samples (seeds 10000 on) for every N in [N_MIN, N_MAX]."""
    ids = (np.arange(pool) % pipe.n_prompts).tolist()
    seeds = [10_000 + i for i in range(pool)]
    return {n: pipe.denoise(ids, seeds, n) for n in range(N_MIN, N_MAX + 1)}


def link_and_decoder(
    pipe: SplitLatentDiffusion,
    unet_latents: dict[int, torch.Tensor],
    iters: int,
    log: dict,
    detail_scale: float = DETAIL_SCALE,
    bands: tuple[float, float] = DETAIL_BANDS,
) -> SplitLatentDiffusion:
    """Stages 3-4 on a pipeline without gains and its pool latents (``pool_latents``).

    Fits the link gain on the ``N_max`` latents and fine-tunes the merging decoder towards the
    reference images (``N_max`` steps, unmerged, plain decoder); returns a pipeline with the same
    U-Net, autoencoder and prompts, the link gain, the fine-tuned decoder and its receive gain.
    """
    link_gain = link_gain_for(unet_latents[N_MAX], detail_scale, bands)
    gained = SplitLatentDiffusion(
        pipe.unet, pipe.vae, pipe.scheduler, pipe.prompt_embeds, link_gain=link_gain
    )
    sent = {n: apply_gain(z, link_gain) for n, z in unet_latents.items()}
    log["link"] = {
        "detail_scale": detail_scale,
        "bands_cycles_per_px": list(bands),
        "unit_variance_factor": float(link_gain[0, 0]),
    }
    references = torch.cat([gained.decode(z, finetuned=False) for z in sent[N_MAX].split(128)])
    merging_vae, receive_gain = finetune_decoder(
        pipe.vae, sent, references, iters, 32, log, link_gain=link_gain
    )
    return SplitLatentDiffusion(
        pipe.unet,
        pipe.vae,
        pipe.scheduler,
        pipe.prompt_embeds,
        merging_vae,
        link_gain=link_gain,
        finetuned_receive_gain=receive_gain,
    )


def main(argv: list[str] | None = None) -> None:
    """Command line: run the three stages and write the backbone."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_BACKBONE_DIR)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--images", type=int, default=6000)
    parser.add_argument("--vae-iters", type=int, default=700)
    parser.add_argument("--flow-iters", type=int, default=1800)
    parser.add_argument("--distill-iters", type=int, default=150)
    parser.add_argument("--decoder-iters", type=int, default=500)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--detail-scale", type=float, default=DETAIL_SCALE)
    parser.add_argument(
        "--from-backbone",
        type=Path,
        default=None,
        help="reuse this built backbone's autoencoder, U-Net and prompts; run the link and decoder stages",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    log: dict = {"args": {k: str(v) for k, v in vars(args).items()}, "seconds": {}}
    start = time.perf_counter()

    if args.from_backbone is None:
        labels_np = np.arange(args.images) % len(CLASS_NAMES)
        images = torch.from_numpy(shape_images(labels_np, seed=args.seed))
        labels = torch.from_numpy(labels_np)

        vae = train_vae(images, args.vae_iters, 32, log)
        raw = encode_latents(vae, images)
        vae.register_to_config(scaling_factor=float(1.0 / raw.std()))
        latents = raw * vae.config.scaling_factor
        log["seconds"]["vae"] = time.perf_counter() - start

        unet, embeds = train_flow(latents, labels, args.flow_iters, 64, log)
        log["seconds"]["flow"] = time.perf_counter() - start
        unet = distill_steps(unet, embeds, args.distill_iters, 32, 1024, log)
        log["seconds"]["distill"] = time.perf_counter() - start
    else:  # stages 1-2 from a built backbone: its weights (fp16 on disk, fp32 here) and its log
        built = SplitLatentDiffusion.from_pretrained(args.from_backbone, torch_dtype=torch.float32)
        unet, vae, embeds = built.unet, built.vae, built.prompt_embeds
        earlier = json.loads((args.from_backbone / "training.json").read_text())
        # the log of the run that trained stages 1-2 (itself, or the one it took them from)
        log["stages_1_2_from"] = earlier.get("stages_1_2_from") or {
            "backbone": str(args.from_backbone),
            **{k: v for k, v in earlier.items() if k not in ("seconds", "decoder_mse_last50", "link")},
        }

    pipe = SplitLatentDiffusion(unet, vae, build_scheduler(), embeds)
    tuned = link_and_decoder(pipe, pool_latents(pipe, 512), args.decoder_iters, log, args.detail_scale)
    log["seconds"]["decoder"] = time.perf_counter() - start

    assert tuned.merging_vae is not None  # link_and_decoder always fine-tunes one
    out = SplitLatentDiffusion(
        unet.half(),
        vae.half(),
        build_scheduler(),
        embeds.half(),
        tuned.merging_vae.half(),
        link_gain=tuned.link_gain,
        finetuned_receive_gain=tuned.finetuned_receive_gain,
    )
    out.save_pretrained(args.out)
    log["seconds"]["total"] = time.perf_counter() - start
    log["torch"] = torch.__version__
    (args.out / "training.json").write_text(json.dumps(log, indent=2) + "\n")
    print(f"wrote {args.out} in {log['seconds']['total']:.0f} s", flush=True)


if __name__ == "__main__":
    main()
