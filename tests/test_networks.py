"""Network building blocks: LDL Gaussian loss and sampling, the STN, the MC-dropout head."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from galaxy_inspector.models.morphology_network import (
    MorphologyNet,
    ScaleSTN,
    gaussian_nll_ldl,
    ldl_output_size,
    sample_ldl,
    unpack_ldl,
)
from galaxy_inspector.models.registry import build_network

SMALL = {"stamp_size": 64, "crop_size": 32, "channels": (4, 4, 8, 8), "hidden": 16,
         "aperture_radii": (2, 4, 8, 16, 28)}


def test_ldl_output_size():
    assert [ldl_output_size(n) for n in (1, 2, 3, 4)] == [2, 5, 9, 14]


def test_unpack_ldl_layout():
    out = torch.arange(9, dtype=torch.float64)
    mu, log_var, L = unpack_ldl(out, 3)
    assert mu.tolist() == [0, 1, 2] and log_var.tolist() == [3, 4, 5]
    assert L.tolist() == [[1, 0, 0], [6, 1, 0], [7, 8, 1]]  # row-major strictly-lower triangle


def test_gaussian_nll_ldl_equals_multivariate_normal_log_prob():
    g = torch.Generator().manual_seed(1)
    n, rows = 3, 50
    out = torch.randn(rows, ldl_output_size(n), generator=g, dtype=torch.float64)
    target = torch.randn(rows, n, generator=g, dtype=torch.float64) * 2
    mu, log_var, L = unpack_ldl(out, n)
    scale_tril = L * torch.exp(0.5 * log_var).unsqueeze(-2)  # L D^1/2
    expected = -torch.distributions.MultivariateNormal(mu, scale_tril=scale_tril).log_prob(target)
    assert torch.allclose(gaussian_nll_ldl(out, target), expected, rtol=1e-10, atol=1e-10)


def test_gaussian_nll_ldl_has_gradients_and_is_minimised_at_the_truth():
    target = torch.tensor([[0.3, -0.2, 1.0]], dtype=torch.float64)
    out = torch.zeros(1, 9, dtype=torch.float64, requires_grad=True)
    loss = gaussian_nll_ldl(out, target).sum()
    loss.backward()
    assert torch.isfinite(out.grad).all() and out.grad.abs().sum() > 0
    at_truth = torch.cat([target, torch.zeros(1, 6, dtype=torch.float64)], 1)
    assert gaussian_nll_ldl(at_truth, target) < gaussian_nll_ldl(out.detach(), target)
    assert gaussian_nll_ldl(at_truth, target).item() == pytest.approx(1.5 * math.log(2 * math.pi))


def _row(mu, log_var, lower):
    return torch.tensor([*mu, *log_var, *lower], dtype=torch.float64)


def test_sample_ldl_draws_have_the_predicted_mean_and_covariance():
    row = _row([1.0, -2.0, 0.5], [0.2, -1.0, 0.4], [0.7, -0.3, 0.5])
    mu, log_var, L = unpack_ldl(row, 3)
    cov = L @ torch.diag(torch.exp(log_var)) @ L.T
    n = 200_000
    draws = sample_ldl(row.expand(n, -1), 3, generator=torch.Generator().manual_seed(0))
    emp_cov = torch.cov(draws.T)
    assert torch.allclose(draws.mean(0), mu, atol=0.02)
    assert torch.allclose(emp_cov, cov, atol=0.03 * cov.abs().max())


def test_sample_ldl_scale_multiplies_the_standard_deviations():
    row = _row([0.0, 0.0], [0.0, 0.0], [0.5])
    n = 100_000
    g = torch.Generator().manual_seed(2)
    plain = sample_ldl(row.expand(n, -1), 2, generator=g)
    g = torch.Generator().manual_seed(2)
    scaled = sample_ldl(row.expand(n, -1), 2, generator=g, scale=[2.0, 0.5])
    assert torch.allclose(scaled, plain * torch.tensor([2.0, 0.5], dtype=torch.float64))
    assert torch.std(scaled[:, 0]).item() == pytest.approx(2.0, rel=0.02)


def test_stn_is_the_identity_at_initialisation():
    torch.manual_seed(0)
    stn = ScaleSTN(out_size=48, n_side_features=3)
    image = torch.randn(5, 1, 48, 48)
    s = stn.scale(image, torch.randn(5, 3))
    assert torch.allclose(s, torch.ones(5), atol=1e-6)
    crop = stn.crop(image, torch.nn.functional.avg_pool2d(image, 2), s)
    assert crop.shape == (5, 2, 48, 48)
    assert torch.allclose(crop[:, 0], image[:, 0], atol=1e-4)  # s = 1 shows the stamp unchanged


def test_stn_scale_half_shows_the_central_half():
    stn = ScaleSTN(out_size=16, n_side_features=1)
    image = torch.zeros(1, 1, 32, 32)
    image[..., 8:24, 8:24] = 1.0  # the central 16x16 block
    crop = stn.crop(image, image, torch.tensor([0.5]))
    assert torch.allclose(crop[0, 0], torch.ones(16, 16), atol=1e-6)


def test_morphology_net_shapes_and_identity_stn():
    torch.manual_seed(0)
    net = MorphologyNet(**SMALL).eval()
    x = torch.randn(3, 1, 64, 64) * 3
    h, s, crop = net.trunk(x)
    assert h.shape == (3, 16) and crop.shape == (3, 2, 32, 32)
    assert torch.allclose(s, torch.ones(3), atol=1e-6)
    assert net(x).shape == (3, ldl_output_size(3))


def test_head_is_deterministic_unless_sampling():
    torch.manual_seed(0)
    net = MorphologyNet(**SMALL).eval()
    with torch.no_grad():
        h, _, _ = net.trunk(torch.randn(2, 1, 64, 64))
        assert torch.equal(net.head(h), net.head(h))
        a, b = net.head(h, sample=True), net.head(h, sample=True)
        assert not torch.equal(a, b)
        assert torch.equal(net.head(h, dropout=0.0, sample=True), net.head(h))


def test_side_features_estimate_the_sky_noise_from_the_border():
    torch.manual_seed(0)
    net = MorphologyNet(**SMALL)
    sigma = 3.0
    x = torch.randn(4, 1, 64, 64) * sigma
    x[..., 24:40, 24:40] += 500.0  # a bright source in the middle does not matter
    log_sigma = net.side_features(x)[:, -1]
    assert np.allclose(torch.exp(log_sigma).numpy(), sigma, rtol=0.1)


def test_build_network():
    net = build_network("gampen-stn-mcdropout-head", dict(SMALL))
    assert isinstance(net, MorphologyNet)
    with pytest.raises(ValueError, match="unknown architecture"):
        build_network("resnet-9000", {})


def test_flux_skip_adds_the_aperture_baseline_outside_dropout():
    torch.manual_seed(0)
    skip = {"output": 2, "mean": 4.0, "std": 1.5, "floor_njy": 100.0}
    net = MorphologyNet(**SMALL, flux_skip=skip).eval()
    with torch.no_grad():
        net.flux_gate.bias.copy_(torch.tensor([-50.0, -50.0, -50.0, -50.0, 50.0]))
        net.head_out.weight[2].zero_()
        net.head_out.bias[2].zero_()
    x = torch.zeros(2, 1, 64, 64)
    x[0, 0, 28:36, 28:36] = 1e4 / 64  # 10^4 nJy inside the largest aperture
    x[1, 0, 30:34, 30:34] = 1e6 / 16
    expected = (torch.tensor([4.0, 6.0]) - skip["mean"]) / skip["std"]
    with torch.no_grad():
        h, _, _ = net.trunk(x)
        assert h.shape == (2, 17)  # hidden features + the baseline column
        for sample in (False, True):  # dropout never touches the baseline
            out = net.head(h.repeat_interleave(4, 0), sample=sample, dropout=0.5)
            assert torch.allclose(out[:, 2], expected.repeat_interleave(4), atol=1e-5)


def test_dihedral_views_are_the_eight_orientations():
    from galaxy_inspector.models.symmetry import dihedral_views

    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    views = dihedral_views(x, 8)
    assert views.shape == (8, 1, 4, 4) and torch.equal(views[0], x[0])
    assert len({tuple(v.flatten().tolist()) for v in views}) == 8
    assert any(torch.equal(v, torch.rot90(x[0], 1, dims=(1, 2))) for v in views)
    assert any(torch.equal(v, torch.flip(x[0], dims=(1,))) for v in views)
    assert torch.equal(dihedral_views(x, 1), x)
