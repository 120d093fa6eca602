"""Token merging of a latent for transmission: bipartite soft matching in 2x2 windows (ToMe-style).

Tokens are 2x2 patches of a ``C x H x W`` latent (``T = HW / 4`` tokens of ``4C`` values). The token
grid is cut into 2x2 windows; one token per window, drawn with a seeded generator, is a destination
and the other three are sources. Each source finds its most cosine-similar destination; the ``r``
most similar sources are merged into their destinations by mean. The edge server sends the
``T - r`` remaining tokens plus one destination index per merged source; the UE unmerges by copying
every destination back to the sources merged into it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from edgegen.envs.meg.cost_model import merged_token_count

__all__ = ["MergedLatent", "merge_tokens", "patchify", "unmerge_tokens", "unpatchify"]


def patchify(latent: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, T, 4C) tokens, row-major over the (H/2, W/2) token grid."""
    b, c, h, w = latent.shape
    if h % 4 or w % 4:
        raise ValueError(
            f"latent height and width must be multiples of 4 (2x2 windows of 2x2 patches), got {h}x{w}"
        )
    x = latent.reshape(b, c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5)
    return x.reshape(b, (h // 2) * (w // 2), 4 * c)


def unpatchify(tokens: torch.Tensor, channels: int, height: int, width: int) -> torch.Tensor:
    """Inverse of :func:`patchify`."""
    b = tokens.shape[0]
    x = tokens.reshape(b, height // 2, width // 2, channels, 2, 2).permute(0, 3, 1, 4, 2, 5)
    return x.reshape(b, channels, height, width)


def _window_split(
    grid_h: int, grid_w: int, generator: torch.Generator | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Token indices of the sources (3 per window) and destinations (1 per window), both sorted."""
    n_windows = (grid_h // 2) * (grid_w // 2)
    choice = torch.randint(0, 4, (n_windows,), generator=generator)
    wy, wx = torch.meshgrid(torch.arange(grid_h // 2), torch.arange(grid_w // 2), indexing="ij")
    wy, wx = wy.reshape(-1), wx.reshape(-1)
    is_dst = torch.zeros(grid_h, grid_w, dtype=torch.bool)
    is_dst[2 * wy + choice // 2, 2 * wx + choice % 2] = True
    flat = is_dst.reshape(-1)
    return torch.nonzero(~flat).squeeze(1), torch.nonzero(flat).squeeze(1)


@dataclass
class MergedLatent:
    """What the edge server transmits, plus the shape the UE needs to rebuild the latent.

    ``kept`` (B, Ns - r, 4C) are the unmerged sources and ``dst`` (B, Nd, 4C) the (merged)
    destinations: ``T - r`` tokens in all. ``merged_dst`` (B, r) is the destination of each merged
    source (the index overhead); the index tensors come from the shared seed, so they cost no bits.
    """

    kept: torch.Tensor
    dst: torch.Tensor
    kept_idx: torch.Tensor
    merged_idx: torch.Tensor
    merged_dst: torch.Tensor
    src_idx: torch.Tensor
    dst_idx: torch.Tensor
    shape: tuple[int, int, int, int]

    @property
    def n_merged(self) -> int:
        """Merged (not transmitted) tokens ``r``."""
        return self.merged_idx.shape[1]

    def add_noise(self, sigma: float, generator: torch.Generator | None = None) -> MergedLatent:
        """The latent after an AWGN link: N(0, sigma^2) on every transmitted value."""
        if not sigma >= 0:
            raise ValueError(f"sigma must be >= 0, got {sigma}")
        if sigma == 0:
            return self
        noise_kept = torch.randn(self.kept.shape, generator=generator, dtype=self.kept.dtype) * sigma
        noise_dst = torch.randn(self.dst.shape, generator=generator, dtype=self.dst.dtype) * sigma
        return MergedLatent(
            self.kept + noise_kept.to(self.kept.device),
            self.dst + noise_dst.to(self.dst.device),
            self.kept_idx,
            self.merged_idx,
            self.merged_dst,
            self.src_idx,
            self.dst_idx,
            self.shape,
        )


def merge_tokens(latent: torch.Tensor, rho: float, generator: torch.Generator | None = None) -> MergedLatent:
    """Merge ``r = floor(rho T)`` tokens (at most 3/4 of them) of a (B, C, H, W) latent.

    Args:
        latent: the latent after the last denoising step.
        rho: merge ratio in [0, 1]; values above 0.75 merge every source (``r = 3T/4``).
        generator: draws the destination of each 2x2 window (the UE uses the same seed).
    """
    if not 0.0 <= rho <= 1.0:
        raise ValueError(f"rho must lie in [0, 1], got {rho}")
    b, c, h, w = latent.shape
    tokens = patchify(latent)
    src_idx, dst_idx = _window_split(h // 2, w // 2, generator)
    src_idx, dst_idx = src_idx.to(latent.device), dst_idx.to(latent.device)
    src, dst = tokens[:, src_idx], tokens[:, dst_idx]
    r = merged_token_count(rho, tokens.shape[1])

    unit_src = src / src.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    unit_dst = dst / dst.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    best_sim, best_dst = (unit_src @ unit_dst.transpose(1, 2)).max(dim=-1)
    order = torch.argsort(best_sim, dim=-1, descending=True, stable=True)
    merged, kept = order[:, :r], order[:, r:]
    merged_dst = torch.gather(best_dst, 1, merged)

    # Mean of each destination with the sources merged into it (scatter sum, then divide by count).
    width = tokens.shape[-1]
    summed = dst.clone().scatter_add_(
        1,
        merged_dst[..., None].expand(-1, -1, width),
        torch.gather(src, 1, merged[..., None].expand(-1, -1, width)),
    )
    count = torch.ones(b, dst.shape[1], 1, dtype=dst.dtype, device=dst.device)
    count = count.scatter_add_(
        1, merged_dst[..., None], torch.ones_like(merged_dst[..., None], dtype=dst.dtype)
    )
    kept_tokens = torch.gather(src, 1, kept[..., None].expand(-1, -1, width))
    return MergedLatent(kept_tokens, summed / count, kept, merged, merged_dst, src_idx, dst_idx, (b, c, h, w))


def unmerge_tokens(merged: MergedLatent) -> torch.Tensor:
    """Rebuild the (B, C, H, W) latent: each merged source copies its destination."""
    b, c, h, w = merged.shape
    width = merged.dst.shape[-1]
    src = torch.empty(b, merged.src_idx.numel(), width, dtype=merged.dst.dtype, device=merged.dst.device)
    src.scatter_(1, merged.kept_idx[..., None].expand(-1, -1, width), merged.kept)
    copies = torch.gather(merged.dst, 1, merged.merged_dst[..., None].expand(-1, -1, width))
    src.scatter_(1, merged.merged_idx[..., None].expand(-1, -1, width), copies)
    tokens = torch.empty(b, src.shape[1] + merged.dst.shape[1], width, dtype=src.dtype, device=src.device)
    tokens[:, merged.src_idx] = src
    tokens[:, merged.dst_idx] = merged.dst
    return unpatchify(tokens, c, h, w)
