"""Token merging against a brute-force reference written with plain loops."""

import math

import numpy as np
import pytest
import torch

from edgegen.envs.backends.diffusion.merging import merge_tokens, patchify, unmerge_tokens, unpatchify


def brute_force_merge(latent: np.ndarray, rho: float, dst_choice: np.ndarray) -> np.ndarray:
    """Merge then unmerge one (C, H, W) latent with loops; dst_choice[w] in 0..3 per 2x2 window."""
    c, h, w = latent.shape
    gh, gw = h // 2, w // 2
    tokens = {}
    for i in range(gh):
        for j in range(gw):
            tokens[(i, j)] = np.array(
                [latent[ch, 2 * i + di, 2 * j + dj] for ch in range(c) for di in (0, 1) for dj in (0, 1)]
            )
    dst, src = [], []
    window = 0
    for wi in range(gh // 2):
        for wj in range(gw // 2):
            for k in range(4):
                pos = (2 * wi + k // 2, 2 * wj + k % 2)
                (dst if k == dst_choice[window] else src).append(pos)
            window += 1
    dst.sort(key=lambda p: p[0] * gw + p[1])
    src.sort(key=lambda p: p[0] * gw + p[1])
    best = []
    for s in src:
        sims = [tokens[s] @ tokens[d] / (np.linalg.norm(tokens[s]) * np.linalg.norm(tokens[d])) for d in dst]
        best.append((max(sims), int(np.argmax(sims))))
    order = sorted(range(len(src)), key=lambda i: (-best[i][0], i))
    r = min(math.floor(rho * gh * gw + 1e-9), len(src))
    merged = order[:r]
    groups = {k: [tokens[d]] for k, d in enumerate(dst)}
    for i in merged:
        groups[best[i][1]].append(tokens[src[i]])
    dst_value = {k: np.mean(v, axis=0) for k, v in groups.items()}
    out_tokens = dict(tokens)
    for k, d in enumerate(dst):
        out_tokens[d] = dst_value[k]
    for i in merged:
        out_tokens[src[i]] = dst_value[best[i][1]]
    out = np.empty_like(latent)
    for (i, j), tok in out_tokens.items():
        vals = tok.reshape(c, 2, 2)
        out[:, 2 * i : 2 * i + 2, 2 * j : 2 * j + 2] = vals
    return out


def _dst_choice(seed: int, n_windows: int) -> np.ndarray:
    return torch.randint(0, 4, (n_windows,), generator=torch.Generator().manual_seed(seed)).numpy()


@pytest.mark.parametrize("rho", [0.0, 0.1, 0.3, 0.5, 0.75, 1.0])
def test_merge_unmerge_matches_brute_force(rho):
    latent = torch.randn(3, 4, 8, 12, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    merged = merge_tokens(latent, rho, generator=torch.Generator().manual_seed(11))
    out = unmerge_tokens(merged).numpy()
    choice = _dst_choice(11, (8 // 4) * (12 // 4))
    for b in range(latent.shape[0]):
        np.testing.assert_allclose(
            out[b], brute_force_merge(latent[b].numpy(), rho, choice), rtol=1e-12, atol=1e-12
        )
    n_tokens = 8 * 12 // 4
    assert merged.n_merged == min(math.floor(rho * n_tokens + 1e-9), 3 * n_tokens // 4)
    # T - r tokens are sent
    assert merged.kept.shape[1] + merged.dst.shape[1] == n_tokens - merged.n_merged


def test_rho_zero_round_trip_is_exact_and_patchify_inverts():
    latent = torch.randn(2, 4, 16, 16)
    assert torch.equal(unpatchify(patchify(latent), 4, 16, 16), latent)
    assert torch.equal(
        unmerge_tokens(merge_tokens(latent, 0.0, generator=torch.Generator().manual_seed(0))), latent
    )


def test_noise_hits_only_transmitted_tokens_and_merged_copies_stay_equal():
    latent = torch.randn(1, 4, 8, 8, dtype=torch.float64)
    g = torch.Generator().manual_seed(3)
    merged = merge_tokens(latent, 0.75, generator=g)
    noisy = unmerge_tokens(merged.add_noise(0.5, generator=torch.Generator().manual_seed(4)))
    tokens = patchify(noisy)[0]
    # every source was merged: each equals its destination, noise included
    src_tokens = tokens[merged.src_idx[merged.merged_idx[0]]]
    dst_tokens = tokens[merged.dst_idx[merged.merged_dst[0]]]
    assert torch.equal(src_tokens, dst_tokens)
    clean = unmerge_tokens(merged)
    assert not torch.allclose(clean, noisy)


def test_bad_inputs_name_the_parameter():
    with pytest.raises(ValueError, match="rho"):
        merge_tokens(torch.zeros(1, 4, 8, 8), 1.5)
    with pytest.raises(ValueError, match="multiples of 4"):
        merge_tokens(torch.zeros(1, 4, 6, 8), 0.5)
