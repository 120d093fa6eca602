"""The split latent-diffusion backbone of MEG-v0: U-Net steps on the edge server, VAE decoder on the UE.

:class:`SplitLatentDiffusion` wraps diffusers components: a ``UNet2DConditionModel``, any diffusers
scheduler (the shipped backbone uses ``FlowMatchEulerDiscreteScheduler``), an ``AutoencoderKL`` whose
decoder is the plain one, optionally a second ``AutoencoderKL`` whose decoder was fine-tuned on
merged, noisy latents, and prompt embeddings (``n_prompts x seq x dim``, what a text encoder would
give). ``from_pretrained`` loads a diffusers-layout folder or hub id (``unet/``, ``vae/``,
``scheduler/``; SD-Turbo-class models work if you pass ``prompt_embeds``) and ``save_pretrained``
writes one. The shipped default is a small class-conditional model trained by
``python -m edgegen.envs.backends.diffusion.train`` on procedural shapes (``envs.backends.data``).

Latents are handled in the scaled space (``vae.config.scaling_factor``), where they have about unit
variance; channel noise ``sigma`` is relative to that. A backbone may carry a link gain
(``latent_spectrum.safetensors``, see ``latent_spectrum``): then ``denoise`` returns the transmitted
latent (the U-Net's latent through the per-frequency link gain, unit variance again), the plain decoder
undoes that gain exactly and the fine-tuned decoder applies its own learnt receive gain. Without the
file (e.g. a hub model) both gains are 1.
"""

from __future__ import annotations

import copy
import importlib.util
import json
from pathlib import Path
from typing import Any

import diffusers
import torch
from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, UNet2DConditionModel
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from safetensors.torch import load_file, save_file

from edgegen.envs.backends.diffusion.latent_spectrum import apply_gain
from edgegen.envs.backends.diffusion.merging import merge_tokens, unmerge_tokens
from edgegen.envs.integrity import verify_assets

__all__ = [
    "DEFAULT_BACKBONE_DIR",
    "RETRAIN_COMMAND",
    "SplitLatentDiffusion",
    "build_scheduler",
    "build_unet",
    "build_vae",
    "load_default_backbone",
]

DEFAULT_BACKBONE_DIR = Path(__file__).resolve().parents[2] / "assets" / "meg_backbone"
RETRAIN_COMMAND = "python -m edgegen.envs.backends.diffusion.train"
SPECTRUM_FILE = "latent_spectrum.safetensors"
IMAGE_SIZE = 32
PROMPT_DIM = 64


def build_vae(down_blocks: int = 2) -> AutoencoderKL:
    """A small KL autoencoder: 3 x 32 x 32 images <-> 4 x 16 x 16 latents.

    ``down_blocks`` (2 to 4) halves the latent's side once per block after the first: 3 gives
    4 x 8 x 8 latents, 4 gives 4 x 4 x 4 (``benchmarks/meg_noise_sensitivity.py --compression-probe``).
    """
    if down_blocks not in (2, 3, 4):
        raise ValueError(f"down_blocks must be 2, 3 or 4, got {down_blocks!r}")
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * down_blocks,
        up_block_types=("UpDecoderBlock2D",) * down_blocks,
        block_out_channels=(32, 64, 64, 64)[:down_blocks],
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=16,
        sample_size=IMAGE_SIZE,
        mid_block_add_attention=False,
    )


def build_unet() -> UNet2DConditionModel:
    """A small conditional U-Net on 4 x 16 x 16 latents, cross-attending to one prompt token."""
    return UNet2DConditionModel(
        sample_size=IMAGE_SIZE // 2,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        block_out_channels=(32, 64),
        layers_per_block=1,
        cross_attention_dim=PROMPT_DIM,
        attention_head_dim=8,
        norm_num_groups=16,
    )


def build_scheduler() -> FlowMatchEulerDiscreteScheduler:
    """Rectified-flow Euler scheduler (few-step friendly), no timestep shift."""
    return FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=1.0)


def _missing(path: Path) -> FileNotFoundError:
    return FileNotFoundError(
        f"MEG backbone file {path} is missing or unreadable; rebuild it with `{RETRAIN_COMMAND}`"
    )


class SplitLatentDiffusion:
    """Edge-server denoising, token merging + AWGN link, UE decoding.

    Args:
        unet: the edge server's denoiser (epsilon, v or flow prediction, as its scheduler expects).
        vae: autoencoder with the plain decoder.
        scheduler: any diffusers scheduler; ``set_timesteps(N)`` then ``step`` N times.
        prompt_embeds: (n_prompts, seq, dim) conditioning, indexed by prompt id.
        merging_vae: autoencoder whose decoder was fine-tuned on merged noisy latents (optional).
        device: torch device to run on.
        link_gain: (H, W) per-frequency gain from the U-Net's latent to the transmitted one (even in
            frequency, nonzero); ``None``: the U-Net's latent is sent as it is.
        finetuned_receive_gain: (C, H, W) per-frequency gain the fine-tuned decoder applies to the
            received latent; ``None``: the inverse of ``link_gain``, as for the plain decoder.
    """

    def __init__(
        self,
        unet: UNet2DConditionModel,
        vae: AutoencoderKL,
        scheduler: SchedulerMixin,
        prompt_embeds: torch.Tensor,
        merging_vae: AutoencoderKL | None = None,
        device: str | torch.device = "cpu",
        link_gain: torch.Tensor | None = None,
        finetuned_receive_gain: torch.Tensor | None = None,
    ) -> None:
        if prompt_embeds.ndim != 3:
            raise ValueError(
                f"prompt_embeds must be (n_prompts, seq, dim), got shape {tuple(prompt_embeds.shape)}"
            )
        self.device = torch.device(device)
        self.unet = unet.to(self.device).eval()
        self.vae = vae.to(self.device).eval()
        self.merging_vae = None if merging_vae is None else merging_vae.to(self.device).eval()
        self.scheduler = scheduler
        self.prompt_embeds = prompt_embeds.to(self.device)
        _, height, width = self.latent_shape
        if link_gain is not None:
            link_gain = link_gain.to(self.device, torch.float32)
            if tuple(link_gain.shape) != (height, width) or not bool((link_gain > 0).all()):
                got = f"shape {tuple(link_gain.shape)}, smallest value {float(link_gain.min()):g}"
                raise ValueError(f"link_gain must be a positive ({height}, {width}) tensor, got {got}")
        if finetuned_receive_gain is not None:
            finetuned_receive_gain = finetuned_receive_gain.to(self.device, torch.float32)
            if tuple(finetuned_receive_gain.shape) not in ((height, width), self.latent_shape):
                raise ValueError(
                    f"finetuned_receive_gain must have shape ({height}, {width}) or {self.latent_shape}, "
                    f"got {tuple(finetuned_receive_gain.shape)}"
                )
        self.link_gain = link_gain
        self.finetuned_receive_gain = finetuned_receive_gain

    @property
    def n_prompts(self) -> int:
        """Number of prompts (classes) the backbone is conditioned on."""
        return self.prompt_embeds.shape[0]

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one latent."""
        size = self.unet.config.sample_size
        size = (size, size) if isinstance(size, int) else tuple(size)
        return (self.unet.config.in_channels, *size)

    @property
    def scaling_factor(self) -> float:
        """Latent scaling of the VAE (latents are denoised, merged and sent in the scaled space)."""
        return float(self.vae.config.scaling_factor)

    def _check_prompts(self, prompt_ids: torch.Tensor) -> None:
        if prompt_ids.min() < 0 or prompt_ids.max() >= self.n_prompts:
            raise ValueError(f"prompt_ids must lie in [0, {self.n_prompts}), got {prompt_ids.tolist()}")

    def initial_noise(self, seeds: list[int]) -> torch.Tensor:
        """One standard-normal latent per seed (a CPU generator each, so devices agree)."""
        shape = self.latent_shape
        noise = [torch.randn(shape, generator=torch.Generator().manual_seed(int(s))) for s in seeds]
        return torch.stack(noise).to(self.device)

    @torch.no_grad()
    def denoise(self, prompt_ids: list[int] | torch.Tensor, seeds: list[int], num_steps: int) -> torch.Tensor:
        """Edge server: ``num_steps`` scheduler steps from the seeds' noise; returns the latents to send.

        That is the scaled latent through ``link_gain`` where the backbone has one.
        """
        prompt_ids = torch.as_tensor(prompt_ids, dtype=torch.long)
        if prompt_ids.numel() != len(seeds):
            raise ValueError(
                f"need one seed per prompt, got {prompt_ids.numel()} prompts and {len(seeds)} seeds"
            )
        if num_steps < 1:
            raise ValueError(f"num_steps must be >= 1, got {num_steps}")
        self._check_prompts(prompt_ids)
        cond = self.prompt_embeds[prompt_ids.to(self.device)]
        scheduler = copy.deepcopy(self.scheduler)
        scheduler.set_timesteps(num_steps, device=self.device)
        latents = self.initial_noise(seeds) * getattr(scheduler, "init_noise_sigma", 1.0)
        for t in scheduler.timesteps:
            model_input = (
                scheduler.scale_model_input(latents, t)
                if hasattr(scheduler, "scale_model_input")
                else latents
            )
            pred = self.unet(model_input, t, encoder_hidden_states=cond).sample
            latents = scheduler.step(pred, t, latents).prev_sample
        return latents if self.link_gain is None else apply_gain(latents, self.link_gain)

    def receive_gain(self, finetuned: bool) -> torch.Tensor | None:
        """The per-frequency gain a decoder applies to a received latent (``None``: none)."""
        if finetuned and self.merging_vae is not None and self.finetuned_receive_gain is not None:
            return self.finetuned_receive_gain
        return None if self.link_gain is None else 1.0 / self.link_gain

    @staticmethod
    def transmit(latents: torch.Tensor, rho: float, sigma: float, seed: int) -> torch.Tensor:
        """Merge ``floor(rho T)`` tokens, add N(0, sigma^2) to what is sent, unmerge at the UE."""
        generator = torch.Generator().manual_seed(int(seed))
        merged = merge_tokens(latents, rho, generator=generator).add_noise(sigma, generator=generator)
        return unmerge_tokens(merged)

    @torch.no_grad()
    def decode(self, latents: torch.Tensor, finetuned: bool = True) -> torch.Tensor:
        """UE: images in [-1, 1] from received latents, with the fine-tuned decoder where there is one."""
        vae = self.merging_vae if finetuned and self.merging_vae is not None else self.vae
        gain = self.receive_gain(finetuned)
        if gain is not None:
            latents = apply_gain(latents, gain)
        return vae.decode(latents / self.scaling_factor).sample.clamp(-1, 1)

    def generate(
        self,
        prompt_ids: list[int],
        seeds: list[int],
        num_steps: int,
        rho: float = 0.0,
        sigma: float = 0.0,
        finetuned: bool = True,
    ) -> torch.Tensor:
        """The whole split pipeline for a batch: images (B, 3, H, W) in [-1, 1]."""
        latents = self.denoise(prompt_ids, seeds, num_steps)
        return self.decode(self.transmit(latents, rho, sigma, seed=seeds[0]), finetuned=finetuned)

    # ------------------------------------------------------------------ persistence
    def save_pretrained(self, path: str | Path) -> None:
        """Write a diffusers-layout folder: unet/, vae/, scheduler/, merging_vae/, prompt_embeds, gains."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.unet.save_pretrained(path / "unet")
        self.vae.save_pretrained(path / "vae")
        self.scheduler.save_pretrained(path / "scheduler")
        if self.merging_vae is not None:
            self.merging_vae.save_pretrained(path / "merging_vae")
        save_file(
            {"prompt_embeds": self.prompt_embeds.detach().cpu().contiguous()},
            path / "prompt_embeds.safetensors",
        )
        gains = {"link_gain": self.link_gain, "finetuned_receive_gain": self.finetuned_receive_gain}
        stored = {k: v.detach().cpu().float().contiguous() for k, v in gains.items() if v is not None}
        if stored:
            save_file(stored, path / SPECTRUM_FILE)
        else:  # no gains: an older file in the folder must not lend this backbone its gains
            (path / SPECTRUM_FILE).unlink(missing_ok=True)

    @classmethod
    def from_pretrained(
        cls,
        path_or_id: str | Path,
        prompt_embeds: torch.Tensor | None = None,
        scheduler: SchedulerMixin | None = None,
        device: str | torch.device = "cpu",
        **kwargs: Any,
    ) -> SplitLatentDiffusion:
        """Load from a local folder or a hub id in diffusers layout.

        Args:
            path_or_id: folder or hub id with ``unet/``, ``vae/`` and ``scheduler/`` sub-folders
                (``merging_vae/`` and ``prompt_embeds.safetensors`` where present).
            prompt_embeds: conditioning to use; required when the folder has no
                ``prompt_embeds.safetensors`` (e.g. encode your prompts with the model's text encoder).
            scheduler: a scheduler to use instead of the stored one (e.g. a few-step scheduler).
            device: torch device.
            **kwargs: passed to every ``from_pretrained`` call (``torch_dtype``, ``revision``, ...).
        """
        if importlib.util.find_spec("accelerate") is None:
            kwargs.setdefault("low_cpu_mem_usage", False)  # diffusers warns on every load otherwise
        local = Path(path_or_id)
        is_local = local.exists()
        if is_local:
            for sub in ("unet", "vae", "scheduler"):
                if not (local / sub).is_dir():
                    raise _missing(local / sub)
        source = str(path_or_id)
        try:
            unet = UNet2DConditionModel.from_pretrained(source, subfolder="unet", **kwargs)
            vae = AutoencoderKL.from_pretrained(source, subfolder="vae", **kwargs)
            merging_vae = None
            if is_local and (local / "merging_vae").is_dir():
                merging_vae = AutoencoderKL.from_pretrained(source, subfolder="merging_vae", **kwargs)
            if scheduler is None:  # the class named in the stored config (Euler, DDIM, flow matching, ...)
                scheduler_config = FlowMatchEulerDiscreteScheduler.load_config(source, subfolder="scheduler")
                scheduler = getattr(diffusers, scheduler_config["_class_name"]).from_config(scheduler_config)
        except (OSError, ValueError, json.JSONDecodeError) as err:
            if is_local:
                raise FileNotFoundError(
                    f"MEG backbone in {local} is corrupt or incomplete ({err}); "
                    f"rebuild it with `{RETRAIN_COMMAND}`"
                ) from err
            raise
        if prompt_embeds is None:
            embeds_file = local / "prompt_embeds.safetensors"
            if not (is_local and embeds_file.is_file()):
                raise ValueError(
                    f"{path_or_id} has no prompt_embeds.safetensors: pass "
                    "prompt_embeds=(n_prompts, seq, dim), e.g. from the model's text encoder"
                )
            try:
                prompt_embeds = load_file(embeds_file)["prompt_embeds"]
            except Exception as err:  # safetensors raises its own error types
                raise FileNotFoundError(
                    f"MEG backbone file {embeds_file} is corrupt ({err}); rebuild it with `{RETRAIN_COMMAND}`"
                ) from err
        prompt_embeds = prompt_embeds.to(unet.dtype)
        gains: dict[str, torch.Tensor] = {}
        spectrum_file = local / SPECTRUM_FILE
        if is_local and spectrum_file.is_file():
            try:
                gains = load_file(spectrum_file)
            except Exception as err:  # safetensors raises its own error types
                raise FileNotFoundError(
                    f"MEG backbone file {spectrum_file} is corrupt ({err}); "
                    f"rebuild it with `{RETRAIN_COMMAND}`"
                ) from err
        return cls(
            unet,
            vae,
            scheduler,
            prompt_embeds,
            merging_vae=merging_vae,
            device=device,
            link_gain=gains.get("link_gain"),
            finetuned_receive_gain=gains.get("finetuned_receive_gain"),
        )


def load_default_backbone(device: str | torch.device = "cpu") -> SplitLatentDiffusion:
    """The shipped backbone (``envs/assets/meg_backbone``)."""
    if not DEFAULT_BACKBONE_DIR.is_dir():
        raise _missing(DEFAULT_BACKBONE_DIR)
    verify_assets(DEFAULT_BACKBONE_DIR)  # every file against the manifest: missing ones are named too
    return SplitLatentDiffusion.from_pretrained(
        DEFAULT_BACKBONE_DIR, device=device, torch_dtype=torch.float32
    )
