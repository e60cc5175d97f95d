"""aekit.nn.OutputConv2d: a decoder's last convolution, computed per input channel on CPUs.

It must be the convolution it replaces: the same weights and state-dict keys, the same outputs
and gradients (to rounding), and the plain layer wherever the per-channel form is not used.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from aekit.nn import OutputConv2d


def _pair(in_channels: int, out_channels: int = 1, **kwargs):
    torch.manual_seed(0)
    plain = nn.Conv2d(in_channels, out_channels, 3, padding=1, **kwargs)
    mine = OutputConv2d(in_channels, out_channels, 3, padding=1, **kwargs)
    mine.load_state_dict(plain.state_dict())  # the same keys: runs saved either way load either way
    return plain, mine


def _grads(layer, x, g):
    x = x.detach().clone().requires_grad_()
    out = layer(x)
    params = [p for p in layer.parameters()]
    return (out, *torch.autograd.grad(out, [x, *params], g))


@pytest.mark.parametrize("in_channels", [1, 8, 16])
@pytest.mark.parametrize("channels_last", [True, False])
@pytest.mark.parametrize("bias", [True, False])
def test_fp32_outputs_and_gradients_are_the_plain_convolutions(in_channels, channels_last, bias):
    plain, mine = _pair(in_channels, bias=bias)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.randn(5, in_channels, 13, 11).contiguous(memory_format=fmt)
    g = torch.randn(5, 1, 13, 11)
    for want, got in zip(_grads(plain, x, g), _grads(mine, x, g), strict=True):
        # the same products, summed in another order: fp32 rounding over up to 16 x 143 terms
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


def test_under_bf16_autocast_it_stays_within_bf16_rounding_of_the_fp32_convolution():
    plain, mine = _pair(16)
    x = torch.randn(8, 16, 28, 28).contiguous(memory_format=torch.channels_last)
    g = torch.randn(8, 1, 28, 28)
    exact = _grads(plain, x, g)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = _grads(mine, x, g)
    for want, have in zip(exact, got, strict=True):
        error = (have.detach().float() - want.detach()).abs().max() / want.detach().abs().max()
        assert float(error) < 2e-2  # bf16 keeps 8 bits


def test_several_output_channels_and_tracing_use_the_plain_convolution():
    plain, mine = _pair(8, 3)
    x = torch.randn(2, 8, 6, 6)
    assert torch.equal(mine(x), plain(x))  # bit for bit: the same kernel
    one_plain, one = _pair(8, 1)
    with pytest.warns(DeprecationWarning):  # the ONNX exporter aekit uses still traces
        traced = torch.jit.trace(one, torch.randn(2, 8, 6, 6))
    assert "aten::sum" not in str(traced.graph)  # an export sees one convolution
    torch.testing.assert_close(traced(x), one_plain(x))
