"""Palm competition backbones: Gabor kernels against OpenCV, the competition, baking, ONNX parity."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from biohash.train.models.compnet import Competition, GaborBank, bake_gabor
from biohash.train.models.hashnet import HashNet


@pytest.mark.parametrize("psi", [0.0, 0.7])
def test_gabor_kernel_matches_opencv(psi):
    bank = GaborBank(1, n=6, kernel_size=35, sigma=5.6, wavelength=10.9, gamma=0.8, psi=psi, zero_dc=False)
    with torch.no_grad():
        bank.theta[2] = 0.3  # any angle, not only the initial spread
    kernels = bank.kernels().detach().numpy()[:, 0]
    for j, theta in enumerate(bank.theta.detach().numpy()):
        ref = cv2.getGaborKernel((35, 35), 5.6, float(theta), 10.9, 0.8, psi, ktype=cv2.CV_64F)
        np.testing.assert_allclose(kernels[j], ref, atol=1e-5)


def test_gabor_kernel_value_by_hand():
    bank = GaborBank(1, n=4, kernel_size=9, sigma=2.0, wavelength=4.0, gamma=0.5, psi=0.3, zero_dc=False)
    theta = np.pi / 4  # filter 1 of 4
    x, y = 3.0, -2.0  # row i = 4 - y = 6, column j = 4 - x = 1 (OpenCV's layout)
    xr, yr = x * np.cos(theta) + y * np.sin(theta), -x * np.sin(theta) + y * np.cos(theta)
    value = np.exp(-(xr**2 + 0.25 * yr**2) / 8.0) * np.cos(2 * np.pi * xr / 4.0 + 0.3)
    assert abs(float(bank.kernels().detach()[1, 0, 6, 1]) - value) < 1e-6


def test_gabor_orientations_spread_and_zero_dc():
    bank = GaborBank(1, n=6, kernel_size=17, sigma=2.8, wavelength=5.5)
    np.testing.assert_allclose(bank.theta.detach().numpy(), np.arange(6) * np.pi / 6, atol=1e-6)
    assert bank.kernels().sum(dim=(2, 3)).abs().max() < 1e-4
    # a filter answers most to lines of its own orientation: a dark horizontal line picks theta = pi / 2
    img = np.full((64, 64), 200, np.uint8)
    cv2.line(img, (0, 32), (63, 32), 40, 3)
    resp = bank(torch.from_numpy(img).float()[None, None])[0, :, 32, 32]
    assert int(resp.argmin()) == 3  # darkest answer = the even filter whose stripes run along the line


def test_gabor_parameters_learn():
    bank = GaborBank(1, n=4, kernel_size=9, sigma=1.4, wavelength=2.8)
    bank(torch.randn(2, 1, 16, 16)).pow(2).mean().backward()
    for p in (bank.theta, bank.sigma, bank.wavelength, bank.gamma, bank.psi):
        assert p.grad is not None and p.grad.abs().sum() > 0


def test_competition_sums_to_one_over_orientations():
    out = Competition(3.0)(torch.randn(2, 9, 5, 5))
    torch.testing.assert_close(out.sum(dim=1), torch.ones(2, 5, 5))
    assert (out > 0).all()


@pytest.mark.parametrize("backbone", ["compnet", "compnet_lite", "small_gabor"])
def test_baked_gabor_gives_the_same_codes(backbone):
    net = HashNet(backbone, bits=32).eval()
    x = torch.randn(2, 1, 128, 128)
    with torch.no_grad():
        before = net(x)
        baked = bake_gabor(net)
        assert not any(isinstance(m, GaborBank) for m in baked.modules())
        torch.testing.assert_close(baked(x), before, atol=1e-5, rtol=1e-4)


def test_compnet_onnx_equals_torch(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    from biohash.train.export import _Branch, _onnx

    net = HashNet("compnet_lite", bits=64).eval()
    path = tmp_path / "b.onnx"
    _onnx(_Branch(net), 128, path)
    x = torch.randn(3, 1, 128, 128)
    with torch.no_grad():
        emb, code = _Branch(net)(x)
    assert any(isinstance(m, GaborBank) for m in net.modules())  # export baked a copy, not the model
    sess = ort.InferenceSession(str(path))
    o_emb, o_code = sess.run(None, {"image": x.numpy()})
    np.testing.assert_allclose(o_emb, emb.numpy(), atol=1e-3)
    assert (np.sign(o_code) == np.sign(code.numpy())).mean() > 0.99


def test_the_competition_stem_codes_a_line_by_its_orientation():
    """The stem hands the trunk CompCode's answer: on vertical and horizontal stripes the winning orientation
    channel differs by half the bank (90 degrees), and the pooled image rides along as the last channel."""
    from biohash.train.models.compnet import CompetitionStem

    stem = CompetitionStem(12).eval()
    yy, xx = torch.meshgrid(torch.arange(128.0), torch.arange(128.0), indexing="ij")
    winners = []
    for stripes in (torch.cos(2 * torch.pi * xx / 10.9), torch.cos(2 * torch.pi * yy / 10.9)):
        with torch.no_grad():
            out = stem(stripes[None, None])
        assert out.shape == (1, 13, 64, 64)
        torch.testing.assert_close(out[0, -1], torch.nn.functional.avg_pool2d(stripes[None], 2)[0])
        votes = out[0, :12, 16:48, 16:48].argmax(dim=0).flatten()
        winners.append(int(votes.mode().values))
    assert (winners[0] - winners[1]) % 12 == 6
