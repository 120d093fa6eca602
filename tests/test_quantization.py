import numpy as np
import pytest
import torch

from edgegen.envs.quantization import check_bits, payload_bits, quantize_numpy, quantize_torch, variance_bound


@pytest.mark.parametrize("bits", [1, 2, 4, 8])
def test_numpy_quantizer_is_unbiased(rng, bits):
    x = rng.normal(size=64)
    trials = 4000
    samples = np.stack([quantize_numpy(x, bits, rng) for _ in range(trials)])
    step = (x.max() - x.min()) / (2**bits - 1)
    # each entry's mean over trials is within 5 standard errors (std <= step / 2)
    assert np.all(np.abs(samples.mean(axis=0) - x) <= 5 * (step / 2) / np.sqrt(trials))


@pytest.mark.parametrize("bits", [2, 4, 8])
def test_numpy_quantizer_error_respects_bound(rng, bits):
    x = rng.uniform(-3, 5, size=256)
    step = (x.max() - x.min()) / (2**bits - 1)
    frac = (x - x.min()) / step - np.floor((x - x.min()) / step)
    exact = np.sum(step**2 * frac * (1 - frac))  # exact E||Q(x) - x||^2
    errors = [np.sum((quantize_numpy(x, bits, rng) - x) ** 2) for _ in range(3000)]
    assert abs(np.mean(errors) - exact) < 0.05 * exact + 1e-12
    assert np.mean(errors) <= variance_bound(x.size, x.max() - x.min(), bits)


def test_quantized_values_lie_on_the_grid(rng):
    x = rng.normal(size=100)
    q = quantize_numpy(x, 3, rng)
    levels = (q - x.min()) / ((x.max() - x.min()) / 7)
    np.testing.assert_allclose(levels, np.round(levels), atol=1e-9)
    assert q.min() >= x.min() - 1e-12 and q.max() <= x.max() + 1e-12
    # every entry rounds to one of its two neighbouring levels
    assert np.all(np.abs(q - x) <= (x.max() - x.min()) / 7 + 1e-12)


def test_torch_quantizer_is_unbiased_and_bounded():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(128, dtype=torch.float32, generator=gen)
    qs = torch.stack([quantize_torch(x, 4, gen) for _ in range(4000)])
    assert qs.dtype == torch.float32
    step = float(x.max() - x.min()) / 15
    assert torch.all((qs.mean(0) - x).abs() <= 5 * (step / 2) / 4000**0.5)
    mse = ((qs - x) ** 2).sum(1).mean().item()
    assert mse <= variance_bound(x.numel(), float(x.max() - x.min()), 4)


def test_32_bit_is_nearly_lossless(rng):
    x = rng.normal(size=1000)
    assert np.max(np.abs(quantize_numpy(x, 32, rng) - x)) <= (x.max() - x.min()) / (2**32 - 1)


def test_payload_and_bound_formulas():
    assert payload_bits(1000, 8) == 8064
    np.testing.assert_allclose(payload_bits([10, 10], [4, 16]), [104, 224])
    np.testing.assert_allclose(variance_bound(100, 2.0, 2), 100 * 4 / (4 * 9))


@pytest.mark.parametrize("bad", [0, 33, 2.5, float("nan")])
def test_bad_bit_width_is_rejected(bad):
    with pytest.raises(ValueError, match=r"bits must be integers in \[1, 32\]"):
        check_bits(bad)
