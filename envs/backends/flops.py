"""FLOP and parameter counts of real architectures, built on torch's meta device (no weights).

The counts come from ``torch.utils.flop_counter.FlopCounterMode`` (a multiply-add counts as two
FLOPs) on the diffusers models with their published configs. They are cached in
``envs/assets/flops.json`` so that envs never import torch; :func:`count_architecture` recounts one
model and ``python -m edgegen.envs.backends.flops`` rewrites the cache: the shipped one in a source
checkout, else ``./flops.json`` in the current folder (never a file inside site-packages); the envs
read a rebuilt cache named by the ``EDGEGEN_FLOPS_CACHE`` environment variable.

| name              | model                                   | input (batch 1)                  |
|-------------------|-----------------------------------------|----------------------------------|
| ddpm-cifar10      | UNet2DModel of google/ddpm-cifar10-32   | 3 x 32 x 32 image + timestep     |
| sdxl-unet         | UNet2DConditionModel of SDXL base 1.0   | 4 x 128 x 128 latent, 77 tokens  |
| sdxl-vae-decoder  | AutoencoderKL decoder of SDXL           | 4 x 128 x 128 latent -> 1024^2   |
| vit-b16-device    | ViT-B/16 patch embedding (transformers) | 3 x 224 x 224 image              |
| vit-b16-server    | ViT-B/16 blocks + norm + head           | 197 x 768 tokens ([CLS] + 196)   |
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path
from typing import Any

from edgegen.envs.integrity import verify_asset

__all__ = ["ARCHITECTURES", "FLOPS_CACHE", "ArchitectureCount", "count_architecture", "get_count"]

FLOPS_CACHE = Path(__file__).resolve().parent.parent / "assets" / "flops.json"
REBUILD_COMMAND = "python -m edgegen.envs.backends.flops"
CACHE_VARIABLE = "EDGEGEN_FLOPS_CACHE"
_CHECKOUT = (Path(__file__).resolve().parents[2] / "pyproject.toml").is_file()


def cache_path() -> Path:
    """The FLOP cache the envs read: ``$EDGEGEN_FLOPS_CACHE`` if set, else the shipped one."""
    custom = os.environ.get(CACHE_VARIABLE)
    return Path(custom) if custom else FLOPS_CACHE


def default_output() -> Path:
    """Where a rebuild writes: the shipped cache in a source checkout, else ./flops.json."""
    return FLOPS_CACHE if _CHECKOUT else Path.cwd() / "flops.json"


@dataclass(frozen=True)
class ArchitectureCount:
    """Counted size of one architecture for one input of batch size 1.

    Args:
        name: key in :data:`ARCHITECTURES`.
        params: number of parameters.
        forward_flops: FLOPs of one forward pass.
        training_flops: FLOPs of one forward plus backward pass (parameter and input gradients);
            0 where only inference is counted.
        input_shape: shape of the main input tensor.
        description: what was built.
    """

    name: str
    params: int
    forward_flops: float
    training_flops: float
    input_shape: tuple[int, ...]
    description: str


def _ddpm_cifar10() -> tuple[Any, Callable[[], Any], tuple[int, ...]]:
    from diffusers import UNet2DModel

    model = UNet2DModel(
        sample_size=32,
        in_channels=3,
        out_channels=3,
        block_out_channels=(128, 256, 256, 256),
        layers_per_block=2,
        down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=None,
        dropout=0.1,
    )
    import torch

    x = torch.empty(1, 3, 32, 32)
    t = torch.tensor([500])
    return model, lambda: model(x, t).sample, tuple(x.shape)


def _sdxl_unet() -> tuple[Any, Callable[[], Any], tuple[int, ...]]:
    import torch
    from diffusers import UNet2DConditionModel

    model = UNet2DConditionModel(
        sample_size=128,
        in_channels=4,
        out_channels=4,
        block_out_channels=(320, 640, 1280),
        layers_per_block=2,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        transformer_layers_per_block=(1, 2, 10),
        attention_head_dim=(5, 10, 20),
        cross_attention_dim=2048,
        addition_embed_type="text_time",
        addition_time_embed_dim=256,
        projection_class_embeddings_input_dim=2816,
        use_linear_projection=True,
    )
    x = torch.empty(1, 4, 128, 128)
    text = torch.empty(1, 77, 2048)
    added = {"text_embeds": torch.empty(1, 1280), "time_ids": torch.empty(1, 6)}
    t = torch.tensor([500])

    def forward() -> Any:
        return model(x, t, encoder_hidden_states=text, added_cond_kwargs=added).sample

    return model, forward, tuple(x.shape)


def _sdxl_vae_decoder() -> tuple[Any, Callable[[], Any], tuple[int, ...]]:
    import torch
    from diffusers import AutoencoderKL

    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(128, 256, 512, 512),
        layers_per_block=2,
        latent_channels=4,
        sample_size=1024,
    )
    # Only the UE's part: post-quant conv + decoder.
    decoder = torch.nn.ModuleList([vae.post_quant_conv, vae.decoder])
    z = torch.empty(1, 4, 128, 128)
    return decoder, lambda: vae.decode(z).sample, tuple(z.shape)


def _vit_b16_parts() -> tuple[Any, Any, Any]:
    from transformers import ViTConfig, ViTForImageClassification

    model = ViTForImageClassification(ViTConfig(num_labels=1000))  # ViT-B/16 at 224^2, ImageNet head
    return model, model.vit.embeddings, model


def _vit_b16_device() -> tuple[Any, Callable[[], Any], tuple[int, ...]]:
    import torch

    _, embeddings, _ = _vit_b16_parts()
    patch = embeddings.patch_embeddings  # the device's part: the 16x16 patch projection
    x = torch.empty(1, 3, 224, 224)
    return patch, lambda: patch(x), tuple(x.shape)


def _vit_b16_server() -> tuple[Any, Callable[[], Any], tuple[int, ...]]:
    import torch

    model, embeddings, _ = _vit_b16_parts()
    # The server's part: position embeddings, 12 blocks, final norm, head. Its input (197 x 768 tokens,
    # [CLS] included) needs a gradient: the server sends it back to the device.
    h = torch.empty(1, 197, 768, requires_grad=True)

    def forward() -> Any:
        hidden = h + embeddings.position_embeddings
        for layer in model.vit.layers:
            hidden = layer(hidden)
        return model.classifier(model.vit.layernorm(hidden)[:, 0])

    server = torch.nn.ModuleList([*model.vit.layers, model.vit.layernorm, model.classifier])
    return server, forward, tuple(h.shape)


ARCHITECTURES: dict[str, tuple[Callable[[], tuple[Any, Callable[[], Any], tuple[int, ...]]], bool, str]] = {
    "ddpm-cifar10": (_ddpm_cifar10, True, "diffusers UNet2DModel, google/ddpm-cifar10-32 config"),
    "sdxl-unet": (_sdxl_unet, False, "diffusers UNet2DConditionModel, SDXL base 1.0 config, 1024^2"),
    "sdxl-vae-decoder": (_sdxl_vae_decoder, False, "diffusers AutoencoderKL decoder, SDXL, 1024^2"),
    "vit-b16-device": (_vit_b16_device, True, "transformers ViT-B/16 patch embedding (device side), 224^2"),
    "vit-b16-server": (
        _vit_b16_server,
        True,
        "transformers ViT-B/16 blocks, norm, head (server), 197 tokens",
    ),
}
"""name -> (builder, whether training FLOPs are counted, description)."""


def count_architecture(name: str) -> ArchitectureCount:
    """Build ``name`` on the meta device and count its parameters and FLOPs (needs torch, diffusers)."""
    if name not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {name!r}; known: {sorted(ARCHITECTURES)}")
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    builder, with_training, description = ARCHITECTURES[name]
    with torch.device("meta"):
        model, forward, input_shape = builder()
        params = sum(p.numel() for p in model.parameters())
        with FlopCounterMode(display=False) as counter:
            forward()
        forward_flops = float(counter.get_total_flops())
        training_flops = 0.0
        if with_training:
            with FlopCounterMode(display=False) as counter:
                forward().sum().backward()
            training_flops = float(counter.get_total_flops())
    return ArchitectureCount(name, int(params), forward_flops, training_flops, input_shape, description)


@cache
def _load_cache(path: Path = FLOPS_CACHE) -> dict[str, ArchitectureCount]:
    verify_asset(path)  # the shipped cache against its manifest digest (a user's own file passes)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        return {
            key: ArchitectureCount(**{**value, "input_shape": tuple(value["input_shape"])})
            for key, value in raw["architectures"].items()
        }
    except FileNotFoundError:
        raise FileNotFoundError(
            f"FLOP cache {path} is missing; rebuild it with `{REBUILD_COMMAND}`"
        ) from None
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as exc:
        raise ValueError(
            f"FLOP cache {path} is corrupt ({exc}); rebuild it with `{REBUILD_COMMAND}`"
        ) from exc


def get_count(name: str, path: Path | None = None) -> ArchitectureCount:
    """Cached count of ``name`` (no torch import), from ``path`` or :func:`cache_path`."""
    path = cache_path() if path is None else path
    counts = _load_cache(path)
    if name not in counts:
        raise ValueError(
            f"architecture {name!r} is not in {path}; cached: {sorted(counts)}. "
            f"Rebuild with `{REBUILD_COMMAND}`"
        )
    return counts[name]


def write_cache(path: Path | None = None) -> dict[str, ArchitectureCount]:
    """Recount every architecture and write the JSON cache (to :func:`default_output` by default)."""
    path = default_output() if path is None else path
    import diffusers
    import torch

    counts = {name: count_architecture(name) for name in ARCHITECTURES}
    payload = {
        "generated_by": REBUILD_COMMAND,
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "flop_convention": "FlopCounterMode: one multiply-add = 2 FLOPs; batch size 1",
        "architectures": {name: asdict(count) for name, count in counts.items()},
    }
    path.write_text(json.dumps(payload, indent=2) + "\n")
    _load_cache.cache_clear()
    return counts


if __name__ == "__main__":
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else default_output()
    for count in write_cache(out).values():
        print(
            f"{count.name:18s} params={count.params / 1e6:9.2f} M  "
            f"forward={count.forward_flops / 1e12:8.4f} TFLOP  "
            f"training={count.training_flops / 1e12:8.4f} TFLOP"
        )
    print(f"wrote {out}" + ("" if out == FLOPS_CACHE else f"; use it with {CACHE_VARIABLE}={out}"))
