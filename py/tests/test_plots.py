"""Report figures (fpdiff.plots) and the toy truth the density pictures are compared with."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from fpdiff import plots as PL
from fpdiff import toys
from fpdiff.toys import checkerboard_log_prob, entropy_floor, true_log_prob


def _png(info):
    with open(info["path"], "rb") as fh:
        head = fh.read(8)
    assert head == b"\x89PNG\r\n\x1a\n" and info["bytes"] > 1000
    return Image.open(info["path"])


def test_toy_panels_figure(tmp_path):
    x = torch.linspace(-4.4, 4.4, 40)
    yy, xx = torch.meshgrid(x, x, indexing="ij")
    pts = torch.stack([xx.reshape(-1), yy.reshape(-1)], 1)
    truth = checkerboard_log_prob(pts).reshape(40, 40)
    model = -0.5 * (xx**2 + yy**2) / 4 - math.log(2 * math.pi * 4)
    samples = toys.sample_toy("checkerboard", 3000, generator=torch.Generator().manual_seed(0))
    info = PL.panels_figure(str(tmp_path / "sub" / "toy.png"), [
        PL.DensityPanel(x, x, model, title="model"),
        PL.DensityPanel(x, x, truth, title="truth"),
        PL.SamplesPanel(samples, title="samples", xlim=(-4.5, 4.5), ylim=(-4.5, 4.5)),
    ], title="checkerboard")
    img = _png(info)
    assert img.size[0] > 2 * img.size[1]  # three panels side by side
    # the pixels are not blank: the truth panel shows two colours at least
    arr = np.asarray(img.convert("RGB"))
    assert len(np.unique(arr.reshape(-1, 3), axis=0)) > 10


def test_curves_and_log_scale_and_grid(tmp_path):
    x = torch.linspace(-1.2, 1.2, 200)[:, None]
    mix = toys.mog1d_mixture()
    lp = mix.log_prob0(x.double())
    info = PL.panels_figure(str(tmp_path / "c.png"), [
        PL.CurvesPanel(x, [("truth", lp), ("shifted", lp - 0.2)], samples=mix.sample(2000, torch.Generator().manual_seed(0)), title="mog1d"),
        PL.DensityPanel(torch.arange(3.0), torch.arange(2.0), torch.tensor([[0.0, -1, -math.inf], [-2, -3, -4]]), log_scale=True),
    ], columns=1)
    img = _png(info)
    assert img.size[1] > img.size[0]  # one column: panels stacked


def test_shape_errors_name_the_panel(tmp_path):
    with pytest.raises(ValueError, match="'bad'.*rows follow y"):
        PL.panels_figure(str(tmp_path / "x.png"), [PL.DensityPanel([0, 1, 2], [0, 1], np.zeros((3, 2)), title="bad")])
    with pytest.raises(ValueError, match="points \\[n, 2\\]"):
        PL.panels_figure(str(tmp_path / "x.png"), [PL.SamplesPanel(np.zeros((5, 3)))])
    with pytest.raises(ValueError, match="3 x values but 2 y values"):
        PL.line_plot(str(tmp_path / "l.png"), [{"label": "a", "x": [1, 2, 3], "y": [1, 2]}])


def test_line_plot(tmp_path):
    info = PL.line_plot(str(tmp_path / "lines.png"), [
        {"label": "m=1", "x": [0, 0.05, 0.15, 0.5], "y": [3.9, 3.8, 3.75, 3.9], "yerr": [0.02] * 4},
        {"label": "m=2", "x": [0, 0.05, 0.15, 0.5], "y": [3.9, 3.7, 3.7, 3.8]},
    ], hline={"y": math.log(32), "label": "floor"}, xlabel="alpha", ylabel="NLL", title="ablation")
    _png(info)


def test_checkerboard_truth_is_the_sampled_law():
    x = toys.sample_toy("checkerboard", 20000, generator=torch.Generator().manual_seed(0))
    lp = checkerboard_log_prob(x)
    assert torch.allclose(lp, torch.full_like(lp, -math.log(32)))  # every sample on a square
    # the density integrates to one on a fine grid, and half of [−4, 4]² is empty
    g = torch.linspace(-4 + 0.01, 4 - 0.01, 400, dtype=torch.float64)
    yy, xx = torch.meshgrid(g, g, indexing="ij")
    p = checkerboard_log_prob(torch.stack([xx.reshape(-1), yy.reshape(-1)], 1)).exp()
    assert float(p.mean() * 64) == pytest.approx(1.0, abs=0.01)
    assert float((p == 0).double().mean()) == pytest.approx(0.5, abs=0.01)
    # off the box: −inf; scaled law: log density − 2 log s
    assert torch.isinf(checkerboard_log_prob(torch.tensor([[5.0, 0.5], [0.5, 0.5]])))[0]
    assert float(checkerboard_log_prob(torch.tensor([[1.0, 1.0]]), scale=2.0)) == pytest.approx(-math.log(32) - 2 * math.log(2))
    assert float(checkerboard_log_prob(torch.tensor([[1.0, -1.0]]))) == -math.inf


def test_entropy_floors():
    h, how = entropy_floor("checkerboard")
    assert how == "exact" and h == pytest.approx(3.4657, abs=1e-4)
    h1, how1 = entropy_floor("mog1d", n=200000)
    # Monte-Carlo entropy of the 1-D mixture agrees with a quadrature of −∫ q log q
    x = torch.linspace(-2, 2, 200001, dtype=torch.float64)[:, None]
    lq = toys.mog1d_mixture().log_prob0(x)
    quad = float(-(lq.exp() * lq).sum() * (x[1, 0] - x[0, 0]))
    assert how1 == "monte-carlo" and h1 == pytest.approx(quad, abs=0.01)
    assert entropy_floor("moons") == (None, None)
    assert true_log_prob("moons", torch.zeros(3, 2)) is None
