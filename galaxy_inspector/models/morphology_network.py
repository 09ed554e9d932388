"""The morphology network, shared by inference (``galaxy_inspector``) and training (``training``).

The morphology network follows GaMPEN (Ghosh et al. 2022): a scale-only spatial transformer
(identity at initialisation) crops the stamp, a CNN reads the crop, and the output layer gives
the mean and the LDL-parametrised full covariance of a Gaussian in the transformed parameter
space (n(n+3)/2 outputs). Unlike GaMPEN, which puts dropout before every layer and so needs a
full forward pass per posterior sample, dropout here lives only in a small *stochastic head*: the
trunk (STN + CNN + aperture photometry) runs once per galaxy and the head is sampled hundreds of
times in one batched call, which makes a 500-sample posterior cost milliseconds.

With ``psf_input`` the head also reads the PSF's FWHM in the model's frame (arcsec), or that it
is unknown: two columns, "known" (0 or 1) and the scaled FWHM (0 when unknown), join the head's
features after the first dropout. A network trained with some PSFs withheld learns both a
posterior for a given seeing and one marginalised over seeing, so intervals can be calibrated
per seeing rather than on average (docs/design.md, "Seeing conditioning").

Tensor conventions: images are ``(N, 1, H, W)`` float32 in nJy per pixel at the model's pixel
scale, the galaxy at the stamp centre (``(H - 1) / 2, (W - 1) / 2`` in 0-based pixel indices).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["MorphologyNet", "ScaleSTN", "ldl_output_size", "unpack_ldl", "gaussian_nll_ldl",
           "sample_ldl"]


#: Columns the PSF adds to the head's input: "known" and the scaled FWHM.
PSF_COLUMNS = 2


def ldl_output_size(n_params: int) -> int:
    """Outputs for a mean plus an LDL covariance: n means, n log-variances, n(n-1)/2 factors."""
    return n_params * (n_params + 3) // 2


def unpack_ldl(output: torch.Tensor, n_params: int):
    """Split raw outputs into mean ``mu``, log-variances ``s`` and unit lower-triangular ``L``.

    Layout of the last axis: ``[mu_1..mu_n, s_1..s_n, l_21, l_31, l_32, l_41, ...]`` (row-major
    strictly-lower triangle). Returns tensors of shapes ``(..., n)``, ``(..., n)``, ``(..., n, n)``.
    """
    n = n_params
    mu = output[..., :n]
    log_var = output[..., n:2 * n]
    lower = output[..., 2 * n:]
    rows, cols = torch.tril_indices(n, n, offset=-1, device=output.device)
    L = torch.zeros(*output.shape[:-1], n, n, dtype=output.dtype, device=output.device)
    L[..., rows, cols] = lower
    L = L + torch.eye(n, dtype=output.dtype, device=output.device)
    return mu, log_var, L


def gaussian_nll_ldl(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Full-covariance Gaussian negative log-likelihood through the LDL factors (per row).

    With Sigma = L D L^T: r^T Sigma^-1 r = |D^-1/2 L^-1 r|^2 and log det Sigma = sum(log D), so
    the loss needs one unit-triangular solve and no inverse or determinant (GaMPEN eqs. 12-14).
    The constant n/2 log(2 pi) is included so the value equals -log N(target; mu, Sigma).
    """
    n = target.shape[-1]
    mu, log_var, L = unpack_ldl(output, n)
    residual = (target - mu).unsqueeze(-1)
    z = torch.linalg.solve_triangular(L, residual, upper=False, unitriangular=True).squeeze(-1)
    mahalanobis = (z * z * torch.exp(-log_var)).sum(-1)
    return 0.5 * (mahalanobis + log_var.sum(-1) + n * math.log(2.0 * math.pi))


def sample_ldl(output: torch.Tensor, n_params: int, generator=None, scale=None,
               eps: torch.Tensor | None = None) -> torch.Tensor:
    """One draw of N(mu, L D L^T) per row of ``output``.

    ``scale`` (length ``n_params``) multiplies the Gaussian's standard deviations parameter by
    parameter (Sigma -> S Sigma S), the calibration knob fitted on validation data. ``eps``
    optionally supplies the standard-normal draws (one row per output row).
    """
    mu, log_var, L = unpack_ldl(output, n_params)
    if eps is None:
        eps = torch.randn(mu.shape, generator=generator, dtype=mu.dtype, device=mu.device)
    draw = (L @ (torch.exp(0.5 * log_var) * eps).unsqueeze(-1)).squeeze(-1)
    if scale is not None:
        draw = draw * torch.as_tensor(scale, dtype=mu.dtype, device=mu.device)
    return mu + draw


def _dropout(h: torch.Tensor, p: float, active: bool, uniform: torch.Tensor | None):
    """Inverted dropout, from given uniform draws when there are any."""
    if not active or p <= 0.0:
        return h
    if uniform is None:
        return F.dropout(h, p, training=True)
    return h * (uniform >= p).to(h.dtype) / (1.0 - p)


def _conv_block(c_in: int, c_out: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
                         nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


class ScaleSTN(nn.Module):
    """Scale-only spatial transformer: predicts one zoom ``s`` and resamples a centred crop.

    ``s = 1`` shows the whole stamp; ``s = 0.5`` the central half at the input's resolution. The
    last layer starts at zero, so the transformer is the identity (``s = 1``) at initialisation, as
    in GaMPEN. Two channels come out: the crop sampled from the full-resolution image and from a
    2x2-binned copy, so that zooming out averages noise instead of skipping pixels.
    """

    def __init__(self, out_size: int, n_side_features: int, min_scale=0.2, max_scale=1.25):
        super().__init__()
        self.out_size = out_size
        self.log_min, self.log_max = math.log(min_scale), math.log(max_scale)
        self.locnet = nn.Sequential(
            nn.Conv2d(1, 16, 5, stride=2, padding=2), nn.ReLU(inplace=True),
            nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(32, 32, 3, stride=2, padding=1), nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(4), nn.Flatten(),
            nn.Linear(32 * 16, 64), nn.ReLU(inplace=True),
        )
        self.to_scale = nn.Linear(64 + n_side_features, 1)
        nn.init.zeros_(self.to_scale.weight)
        nn.init.zeros_(self.to_scale.bias)
        # sigmoid(offset) puts log s = 0 (identity) at zero output.
        frac = -self.log_min / (self.log_max - self.log_min)
        self.offset = math.log(frac / (1.0 - frac))

    def scale(self, scaled_image: torch.Tensor, side: torch.Tensor) -> torch.Tensor:
        coarse = F.adaptive_avg_pool2d(scaled_image, 32)
        z = self.to_scale(torch.cat([self.locnet(coarse), side], dim=1)).squeeze(1)
        frac = torch.sigmoid(z + self.offset)
        return torch.exp(self.log_min + (self.log_max - self.log_min) * frac)

    def crop(self, fine: torch.Tensor, binned: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        n = fine.shape[0]
        theta = torch.zeros(n, 2, 3, dtype=fine.dtype, device=fine.device)
        theta[:, 0, 0] = s
        theta[:, 1, 1] = s
        grid = F.affine_grid(theta, (n, 1, self.out_size, self.out_size), align_corners=False)
        return torch.cat([F.grid_sample(fine, grid, align_corners=False),
                          F.grid_sample(binned, grid, align_corners=False)], dim=1)


class MorphologyNet(nn.Module):
    """STN + CNN + aperture photometry trunk and an MC-dropout head with an LDL Gaussian output.

    Parameters
    ----------
    stamp_size : int
        Input stamp side in pixels.
    crop_size : int
        Side of the STN output that the CNN reads.
    n_params : int
        Number of predicted parameters (3: bt, re, flux).
    dropout : float
        Dropout rate of the stochastic head (Monte Carlo dropout at inference).
    arsinh_scale : float
        Pixel preprocessing ``arsinh(x / arsinh_scale)``, in nJy per pixel.
    aperture_radii : sequence of float
        Radii (pixels) of centred circular apertures whose fluxes feed the head.
    aperture_scale : float
        Aperture fluxes enter as ``arsinh(F / aperture_scale)`` (nJy).
    channels : sequence of int
        Widths of the CNN stages.
    flux_skip : dict, optional
        Make the head predict the flux mean as a *correction* to aperture photometry:
        ``{"output": j, "mean": m, "std": s, "floor_njy": f}`` adds
        ``(log10 max(F_ap, f) - m) / s`` to mean output ``j``, where ``log10 F_ap`` is a
        weighted average over the apertures with weights the trunk chooses (a small aperture
        for a faint galaxy in noise, a large one for a bright, extended one). A plain
        regression on log flux shrinks towards the middle of the training range; the skip
        leaves the network only the missing-light correction to learn.
    psf_input : dict, optional
        ``{"centre": c, "scale": s}``: the head reads the PSF FWHM ``f`` (arcsec) as
        ``(f - c) / s`` beside a "known" flag; ``forward``/``head`` take ``psf_fwhm`` (NaN:
        unknown).
    """

    def __init__(self, stamp_size=128, crop_size=64, n_params=3, dropout=0.1, arsinh_scale=2.0,
                 aperture_radii=(2, 4, 8, 16, 32, 60), aperture_scale=10.0,
                 channels=(32, 48, 96, 128), hidden=256, flux_skip: dict | None = None,
                 psf_input: dict | None = None):
        super().__init__()
        self.n_params = n_params
        self.hidden = hidden
        self.arsinh_scale = arsinh_scale
        self.aperture_scale = aperture_scale
        centre = (stamp_size - 1) / 2.0
        yy, xx = torch.meshgrid(torch.arange(stamp_size), torch.arange(stamp_size), indexing="ij")
        radius = torch.hypot(yy - centre, xx - centre)
        self.register_buffer("apertures", torch.stack(
            [(radius <= r).float() for r in aperture_radii]).reshape(len(aperture_radii), -1),
            persistent=False)
        self.register_buffer("border", (radius > 0.47 * stamp_size).reshape(-1), persistent=False)
        n_side = len(aperture_radii) + 1
        self.stn = ScaleSTN(crop_size, n_side)
        c1, c2, c3, c4 = channels
        self.cnn = nn.Sequential(
            _conv_block(2, c1, 1), _conv_block(c1, c1, 2),
            _conv_block(c1, c2, 1), _conv_block(c2, c2, 2),
            _conv_block(c2, c3, 1), _conv_block(c3, c3, 2),
            _conv_block(c3, c4, 2), nn.Flatten(),
        )
        cnn_out = c4 * (crop_size // 16) ** 2
        self.trunk_head = nn.Sequential(
            nn.Linear(cnn_out + n_side + 1, hidden), nn.ReLU(inplace=True),
            nn.Linear(hidden, hidden), nn.ReLU(inplace=True),
        )
        self.dropout = dropout
        self.flux_skip = dict(flux_skip) if flux_skip else None
        if self.flux_skip:
            self.flux_gate = nn.Linear(hidden, len(aperture_radii))
            nn.init.zeros_(self.flux_gate.weight)
            with torch.no_grad():  # start from the largest aperture
                self.flux_gate.bias.copy_(torch.linspace(-3.0, 3.0, len(aperture_radii)))
        self.psf_input = dict(psf_input) if psf_input else None
        self.head_hidden = nn.Linear(hidden + (PSF_COLUMNS if self.psf_input else 0), hidden)
        self.trunk_frozen = False
        self.head_out = nn.Linear(hidden, ldl_output_size(n_params))

    def psf_columns(self, psf_fwhm, rows: int, like: torch.Tensor) -> torch.Tensor:
        """The head's PSF columns ``(rows, 2)``: known flag and scaled FWHM, from ``psf_fwhm``
        (None, one value, or one per row; NaN: unknown), dtype and device of ``like``."""
        f = torch.full((rows,), math.nan) if psf_fwhm is None else torch.as_tensor(
            psf_fwhm, dtype=torch.float64).reshape(-1).expand(rows)
        f = f.to(device=like.device, dtype=like.dtype)
        known = torch.isfinite(f)
        scaled = (f - self.psf_input["centre"]) / self.psf_input["scale"]
        return torch.stack([known.to(like.dtype), torch.where(known, scaled, 0.0)], dim=1)

    def freeze_trunk(self) -> None:
        """Train the head alone: the trunk's weights stop learning and its batch-norm layers
        keep their statistics (``train()`` leaves them in evaluation mode)."""
        self.trunk_frozen = True
        head = {id(p) for m in (self.head_hidden, self.head_out) for p in m.parameters()}
        for p in self.parameters():
            p.requires_grad_(id(p) in head)
        self.train(self.training)

    def train(self, mode: bool = True):
        super().train(mode)
        if self.trunk_frozen:
            for part in (self.stn, self.cnn, self.trunk_head):
                part.eval()
        return self

    def side_features(self, x: torch.Tensor) -> torch.Tensor:
        """Aperture fluxes and the log of a robust sky-noise estimate from the stamp border."""
        flat = x.flatten(1)
        fluxes = torch.asinh(flat @ self.apertures.T / self.aperture_scale)
        border = flat[:, self.border]
        med = border.median(dim=1, keepdim=True).values
        sigma = 1.4826 * (border - med).abs().median(dim=1).values
        return torch.cat([fluxes, torch.log(sigma.clamp_min(1e-3)).unsqueeze(1)], dim=1)

    def trunk(self, x: torch.Tensor):
        """Deterministic features of each stamp, the STN scale and the crop the CNN saw.

        With ``flux_skip`` the features' last column is the scaled aperture-flux baseline that
        the head adds to its flux mean (it never passes through dropout).
        """
        side = self.side_features(x)
        fine = torch.asinh(x / self.arsinh_scale)
        binned = torch.asinh(F.avg_pool2d(x, 2) / self.arsinh_scale)
        s = self.stn.scale(fine, side)
        crop = self.stn.crop(fine, binned, s)
        feats = self.cnn(crop)
        h = self.trunk_head(torch.cat([feats, side, torch.log(s).unsqueeze(1)], dim=1))
        if self.flux_skip:
            h = torch.cat([h, self._flux_baseline(x, h)], dim=1)
        return h, s, crop

    def _flux_baseline(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """Scaled log10 aperture flux, averaged over apertures with trunk-chosen weights."""
        skip = self.flux_skip
        fluxes = x.flatten(1) @ self.apertures.T
        log_flux = torch.log10(fluxes.clamp_min(skip["floor_njy"]))
        weights = torch.softmax(self.flux_gate(h), dim=1)
        baseline = (weights * log_flux).sum(1, keepdim=True)
        return (baseline - skip["mean"]) / skip["std"]

    def head(self, h: torch.Tensor, dropout: float | None = None, sample: bool = False,
             uniforms: tuple[torch.Tensor, torch.Tensor] | None = None, psf_fwhm=None):
        """Raw LDL outputs from trunk features; ``sample=True`` applies dropout (MC dropout).

        ``uniforms`` optionally gives the U(0, 1) draws behind the two dropout masks (each of
        shape ``(rows, hidden)``), so a caller can make them from its own per-galaxy generator.
        ``psf_fwhm`` (one per row, NaN unknown) is read by a network with ``psf_input`` only.
        """
        p = self.dropout if dropout is None else dropout
        active = sample or self.training
        if self.flux_skip:
            h, baseline = h[:, :-1], h[:, -1]
        first, second = uniforms if uniforms is not None else (None, None)
        h = _dropout(h, p, active, first)
        if self.psf_input:
            h = torch.cat([h, self.psf_columns(psf_fwhm, len(h), h)], dim=1)
        h = F.relu(self.head_hidden(h))
        h = _dropout(h, p, active, second)
        out = self.head_out(h)
        if self.flux_skip:
            j = self.flux_skip["output"]
            out = torch.cat([out[:, :j], out[:, j:j + 1] + baseline.unsqueeze(1),
                             out[:, j + 1:]], dim=1)
        return out

    def forward(self, x: torch.Tensor, psf_fwhm=None) -> torch.Tensor:
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.trunk_frozen):
            h, _, _ = self.trunk(x)
        return self.head(h, psf_fwhm=psf_fwhm)
