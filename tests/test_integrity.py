"""Shipped assets: SHA-256 manifest, checked once per process, errors that name the file and the fix."""

from __future__ import annotations

import shutil

import gymnasium as gym
import pytest

import edgegen  # noqa: F401  (registers the edgegen ids)
import edgegen.envs.integrity as integrity
from edgegen.envs.backends import flops
from edgegen.envs.integrity import ASSETS_DIR, AssetError, verify_asset, verify_assets


@pytest.fixture
def assets(tmp_path, monkeypatch):
    """A copy of the shipped assets that the loaders read instead (so tests can damage it)."""
    root = tmp_path / "assets"
    shutil.copytree(ASSETS_DIR, root)
    monkeypatch.setattr(integrity, "ASSETS_DIR", root)
    monkeypatch.setattr(integrity, "_verified", set())
    return root


def _damage(path, offset_fraction=0.5, size=64):
    data = bytearray(path.read_bytes())
    start = int(len(data) * offset_fraction)
    data[start : start + size] = bytes(size)  # 64 bytes overwritten in the middle
    path.write_bytes(bytes(data))


def test_every_shipped_asset_matches_the_manifest():
    entries = integrity._manifest(ASSETS_DIR)
    shipped = {
        p.relative_to(ASSETS_DIR).as_posix()
        for p in ASSETS_DIR.rglob("*")
        if p.is_file() and p.name not in ("MANIFEST.sha256", "README.md")
    }
    assert set(entries) == shipped and len(shipped) == 13
    for relative in entries:
        verify_asset(ASSETS_DIR / relative)


@pytest.mark.parametrize(
    "relative",
    [
        "meg_backbone/vae/diffusion_pytorch_model.safetensors",
        "meg_backbone/merging_vae/diffusion_pytorch_model.safetensors",
        "meg_backbone/unet/diffusion_pytorch_model.safetensors",
        "meg_backbone/prompt_embeds.safetensors",
        "meg_backbone/latent_spectrum.safetensors",
    ],
)
def test_damaged_backbone_file_is_named_with_its_rebuild_command(assets, relative):
    _damage(assets / relative)
    with pytest.raises(AssetError, match=rf"{relative}.*python -m edgegen.envs.backends.diffusion.train"):
        verify_assets(assets / "meg_backbone")


def test_deleted_prompt_embeddings_name_the_rebuild_command(assets):
    (assets / "meg_backbone" / "prompt_embeds.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match=r"prompt_embeds.safetensors is missing.*diffusion.train"):
        verify_assets(assets / "meg_backbone")


def test_live_envs_check_their_lazily_used_assets_when_built(assets, monkeypatch):
    import edgegen.envs.backends.diffusion.backbone as backbone
    import edgegen.envs.backends.frechet as frechet

    monkeypatch.setattr(backbone, "DEFAULT_BACKBONE_DIR", assets / "meg_backbone")
    monkeypatch.setattr(frechet, "CLASSIFIER_WEIGHTS", assets / "shape16_classifier.safetensors")
    _damage(assets / "meg_backbone" / "vae" / "diffusion_pytorch_model.safetensors")
    with pytest.raises(AssetError, match=r"vae/diffusion_pytorch_model\.safetensors is corrupt"):
        gym.make("edgegen/MEG-v0", backend="live")
    # a truncated classifier is found when the env is built, not after the last round of training
    classifier = assets / "shape16_classifier.safetensors"
    classifier.write_bytes(classifier.read_bytes()[:1000])
    with pytest.raises(AssetError, match=r"shape16_classifier.safetensors is corrupt.*envs.backends.frechet"):
        gym.make("edgegen/FedDiffusion-v0", backend="live")
    # the model backends need neither file
    gym.make("edgegen/MEG-v0").reset(seed=0)


def test_flops_cache_damage_names_the_file(assets, tmp_path):
    flops._load_cache.cache_clear()
    try:
        _damage(assets / "flops.json", 0.3, 8)
        with pytest.raises(AssetError, match=r"flops.json is corrupt.*python -m edgegen.envs.backends.flops"):
            flops._load_cache(assets / "flops.json")
        outside = tmp_path / "my_flops.json"  # a user's own cache: no manifest, but a clear error
        outside.write_bytes(b'{"architectures": "\xff\xfe"}')
        with pytest.raises(ValueError, match=r"FLOP cache .*my_flops.json is corrupt.*envs.backends.flops"):
            flops._load_cache(outside)
    finally:
        flops._load_cache.cache_clear()


def test_each_file_is_hashed_once_per_process(assets, monkeypatch):
    calls = []
    real = integrity._digest
    monkeypatch.setattr(integrity, "_digest", lambda path: calls.append(path) or real(path))
    for _ in range(3):
        verify_asset(assets / "meg_quality_profile.npz")
    assert len(calls) == 1
