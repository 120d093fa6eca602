import json

import pytest

from edgegen.envs.backends import flops


def test_cache_matches_a_fresh_count_of_the_ddpm():
    cached = flops.get_count("ddpm-cifar10")
    recount = flops.count_architecture("ddpm-cifar10")
    assert recount == cached


def test_counts_agree_with_published_sizes():
    ddpm = flops.get_count("ddpm-cifar10")
    assert round(ddpm.params / 1e6, 1) == 35.7  # google/ddpm-cifar10-32: 35.7 M parameters
    # backward costs about twice the forward pass
    assert 2.8 < ddpm.training_flops / ddpm.forward_flops < 3.2
    sdxl = flops.get_count("sdxl-unet")
    assert round(sdxl.params / 1e9, 2) == 2.57  # SDXL base U-Net: 2.6 B parameters
    assert round(sdxl.forward_flops / 1e12, 2) == 6.76  # DESIGN.md section 3
    assert round(flops.get_count("sdxl-vae-decoder").forward_flops / 1e12, 2) == 10.47


def test_missing_and_corrupt_cache_name_the_file_and_the_fix(tmp_path):
    missing = tmp_path / "flops.json"
    with pytest.raises(
        FileNotFoundError, match=r"flops.json is missing.*python -m edgegen.envs.backends.flops"
    ):
        flops.get_count("ddpm-cifar10", missing)
    corrupt = tmp_path / "corrupt.json"
    corrupt.write_text(json.dumps({"architectures": {"x": {"params": 1}}}))
    with pytest.raises(ValueError, match=r"corrupt.json is corrupt.*python -m edgegen.envs.backends.flops"):
        flops.get_count("x", corrupt)


def test_unknown_architecture():
    with pytest.raises(ValueError, match="unknown architecture 'resnet'"):
        flops.count_architecture("resnet")
    with pytest.raises(ValueError, match="is not in"):
        flops.get_count("resnet")


def test_a_rebuilt_cache_goes_to_the_user_and_the_envs_read_it_by_variable(tmp_path, monkeypatch):
    # In a checkout a rebuild refreshes the shipped asset; installed, it writes ./flops.json (never
    # into site-packages), and EDGEGEN_FLOPS_CACHE points the envs at it.
    assert flops.default_output() == flops.FLOPS_CACHE  # this test runs in the checkout
    monkeypatch.setattr(flops, "_CHECKOUT", False)
    monkeypatch.chdir(tmp_path)
    assert flops.default_output() == tmp_path / "flops.json"
    shipped = json.loads(flops.FLOPS_CACHE.read_text())
    shipped["architectures"]["ddpm-cifar10"]["params"] = 12345
    (tmp_path / "flops.json").write_text(json.dumps(shipped))
    assert flops.get_count("ddpm-cifar10").params != 12345
    monkeypatch.setenv(flops.CACHE_VARIABLE, str(tmp_path / "flops.json"))
    assert flops.cache_path() == tmp_path / "flops.json"
    assert flops.get_count("ddpm-cifar10").params == 12345
    flops._load_cache.cache_clear()
