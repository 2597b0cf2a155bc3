"""Networks: exact Score SDE layouts, FIR resampling, every architecture option, forward-mode AD."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import signal

from fpdiff.config import CIFAR10Config, DDPMppConfig, MLPConfig, NCSNppConfig, ToyDataConfig
from fpdiff.models import (ARCHITECTURES, EMA, DDPMpp, NCSNpp, ToyScoreMLP, architecture,
                           build_network, count_parameters, meta_init, network_arguments)
from fpdiff.models import fir
from fpdiff.models.ddpmpp import DDPMPP_DEFAULTS

from _ckpt_helpers import configs_of_original, load_manifest, manifests


# ---------------------------------------------------------------------------------------------
# layouts of the full-size CIFAR-10 models

def _manifest_ids():
    return [p.rsplit("manifest_", 1)[1][:-5] for p in manifests()]


def test_every_manifest_is_checked():
    assert len(_manifest_ids()) == 4


@pytest.mark.parametrize("name", _manifest_ids())
def test_state_dict_layout_equals_manifest(name):
    path = [p for p in manifests() if p.endswith(f"manifest_{name}.json")][0]
    m = load_manifest(path)
    model_cfg, data_cfg = configs_of_original(m["config_model"], m["config_data"])
    deep = m["config_model"]["num_res_blocks"] == 8
    if deep:   # layout only: build on the meta device (fast, no memory)
        with meta_init():
            net = build_network(model_cfg, data_cfg)
    else:      # real initialisation for the two standard presets
        net = build_network(model_cfg, data_cfg)
    ours = [["module." + k, list(v.shape), str(v.dtype).replace("torch.", "")]
            for k, v in net.state_dict().items()]
    assert ours == m["model_state_dict"]
    assert count_parameters(net) == m["total_parameter_count"]
    assert count_parameters(net, trainable_only=True) == m["trainable_parameter_count"]
    assert [["module." + n, list(p.shape)] for n, p in net.named_parameters() if not p.requires_grad] \
        == m["non_trainable_parameters"]
    # EMA shadow order = trainable parameters in model.parameters() order
    trainable = ["module." + n for n, p in net.named_parameters() if p.requires_grad]
    assert trainable == [s[2] for s in m["ema"]["shadow_params"]]
    assert len(list(net.parameters())) == m["num_parameter_tensors"]


def test_presets_match_manifest_configs():
    names = {"ve_cifar10_ncsnpp_continuous": "ve/cifar10_ncsnpp_continuous",
             "vp_cifar10_ddpmpp_continuous": "vp/cifar10_ddpmpp_continuous",
             "ve_cifar10_ncsnpp_deep_continuous": "ve/cifar10_ncsnpp_deep_continuous",
             "subvp_cifar10_ddpmpp_deep_continuous": "subvp/cifar10_ddpmpp_deep_continuous"}
    for path in manifests():
        m = load_manifest(path)
        arch = architecture(names[path.rsplit("manifest_", 1)[1][:-5]])
        for k, v in m["config_model"].items():
            if k == "name":
                continue
            ours = getattr(arch.model, k)
            assert (list(ours) if isinstance(ours, tuple) else ours) == v, k
        assert arch.data.centered == m["config_data"]["centered"]


def test_ddpmpp_kind_fills_defaults():
    with meta_init():
        a = DDPMpp()
    arch = architecture("vp/cifar10_ddpmpp_continuous")
    with meta_init():
        b = build_network(arch.model, arch.data)
    assert [(k, v.shape) for k, v in a.state_dict().items()] == \
        [(k, v.shape) for k, v in b.state_dict().items()]


# ---------------------------------------------------------------------------------------------
# plain keyword arguments ≡ build_network from a config

def _defaults(cls) -> dict:
    if cls is DDPMpp:  # NCSN++'s keywords with DDPM++'s defaults laid over them
        return {**_defaults(NCSNpp), **DDPMPP_DEFAULTS}
    return {n: p.default for n, p in inspect.signature(cls).parameters.items()
            if p.default is not inspect.Parameter.empty}


@pytest.mark.parametrize("cls,model,data", [
    (NCSNpp, NCSNppConfig(), CIFAR10Config()),
    (DDPMpp, DDPMppConfig(), CIFAR10Config(centered=True)),
    (ToyScoreMLP, MLPConfig(), ToyDataConfig(dataset="checkerboard", dim=2)),
])
def test_network_defaults_are_the_dsl_defaults(cls, model, data):
    """The classes' keyword defaults = what the DSL's defaults build (the original networks)."""
    got_cls, kwargs = network_arguments(model, data)
    assert got_cls is cls
    kwargs.pop("dim", None)
    assert _defaults(cls) == kwargs


_SMALL_KW = dict(nf=8, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(8,), image_size=16)


@pytest.mark.parametrize("cls,kwargs,model,data", [
    (NCSNpp, dict(_SMALL_KW, init_scale=0.5, fourier_scale=4.0, sigma_max=20.0, num_scales=10),
     NCSNppConfig(nf=8, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(8,), init_scale=0.5,
                  fourier_scale=4.0, sigma_max=20.0, num_scales=10),
     CIFAR10Config(image_size=16)),
    (NCSNpp, dict(_SMALL_KW, embedding_type="positional", scale_by_sigma=False, centered=True,
                  progressive="output_skip", progressive_input="input_skip", dropout=0.0,
                  nonlinearity="elu", fir_kernel=(1, 1)),
     NCSNppConfig(nf=8, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(8,),
                  embedding_type="positional", scale_by_sigma=False, progressive="output_skip",
                  progressive_input="input_skip", dropout=0.0, nonlinearity="elu",
                  fir_kernel=(1, 1)),
     CIFAR10Config(image_size=16, centered=True)),
    (DDPMpp, dict(_SMALL_KW, init_scale=0.5, resblock_type="ddpm"),
     DDPMppConfig(nf=8, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(8,), init_scale=0.5,
                  resblock_type="ddpm"),
     CIFAR10Config(image_size=16, centered=True)),
    (ToyScoreMLP, dict(dim=3, embed_dim=16, time_hidden=(32,), x_hidden=(32, 32), width=24,
                       hidden=(64,), nonlinearity="tanh", param="score"),
     MLPConfig(embed_dim=16, time_hidden=(32,), x_hidden=(32, 32), width=24, hidden=(64,),
               nonlinearity="tanh", param="score"),
     ToyDataConfig(dataset="gaussian", dim=3)),
])
def test_plain_keywords_build_the_same_network_as_the_config(cls, kwargs, model, data):
    torch.manual_seed(0)
    plain = cls(**kwargs).eval()
    torch.manual_seed(0)
    built = build_network(model, data).eval()
    assert type(built) is cls
    a, b = plain.state_dict(), built.state_dict()
    assert list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)
    if cls is ToyScoreMLP:
        x, labels = torch.randn(4, 3), torch.rand(4)
    else:
        x = torch.rand(2, 3, 16, 16)
        fourier = kwargs.get("embedding_type", _defaults(cls)["embedding_type"]) == "fourier"
        labels = torch.tensor([0.4, 3.0]) if fourier else torch.tensor([10.0, 900.0])
    with torch.no_grad():
        assert torch.equal(plain(x, labels), built(x, labels))


def test_build_network_refuses_what_it_cannot_build():
    with pytest.raises(ValueError, match="model.conv_size"):
        build_network(NCSNppConfig(conv_size=5), CIFAR10Config())
    with pytest.raises(ValueError, match="model.normalization"):
        build_network(DDPMppConfig(normalization="InstanceNorm"), CIFAR10Config())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="data.kind 'toy' is not image data"):
        build_network(NCSNppConfig(), ToyDataConfig(dataset="checkerboard", dim=2))
    with pytest.raises(ValueError, match="data.kind must be 'toy'"):
        build_network(MLPConfig(), CIFAR10Config())
    with pytest.raises(ValueError, match="data.dim"):
        build_network(MLPConfig(), ToyDataConfig(dataset="gaussian", dim=None))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="progressive_input must be one of"):
        NCSNpp(progressive_input="sideways")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="param must be"):
        ToyScoreMLP(dim=2, param="noise")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        NCSNpp(128)  # type: ignore[misc]   # keyword-only: no silent positional mix-ups


def test_architectures_build_and_resize():
    assert len(ARCHITECTURES) == 10
    for name, arch in ARCHITECTURES.items():
        assert name.split("/")[0] == arch.sde
        assert arch.data.centered == (arch.sde != "ve")
    small = architecture("vp/cifar10_ncsnpp_continuous").with_model(nf=8)
    assert small.model.nf == 8 and small.model.embedding_type == "positional"
    with pytest.raises(KeyError, match="known: subvp/"):
        architecture("ve/cifar10_ddpmpp_continuous")


def test_model_modules_import_without_cycles():
    """Each module of fpdiff.models imports only modules below it (no import circle)."""
    pkg = Path(__file__).resolve().parents[1] / "fpdiff" / "models"
    graph = {}
    for f in pkg.glob("*.py"):
        deps = set()
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                deps |= {node.module} if node.module else {a.name for a in node.names}
        graph[f.stem] = {d for d in deps if d != "__init__"}
    done, stack = set(), []

    def visit(m):
        assert m not in stack, "import circle: " + " -> ".join(stack + [m])
        if m in done:
            return
        stack.append(m)
        for d in graph.get(m, ()):
            visit(d)
        stack.pop()
        done.add(m)

    for m in graph:
        visit(m)
    assert "layers" not in graph["fir"] and "fir" in graph["layers"]


# ---------------------------------------------------------------------------------------------
# FIR resampling in plain PyTorch against a NumPy/SciPy statement of upfirdn

def _upfirdn_ref(x: np.ndarray, k2: np.ndarray, up: int, down: int, pad) -> np.ndarray:
    n, c, h, w = x.shape
    z = np.zeros((n, c, h * up, w * up))
    z[:, :, ::up, ::up] = x
    p0, p1 = pad
    z = np.pad(z, ((0, 0), (0, 0), (p0, p1), (p0, p1)))
    out = np.stack([np.stack([signal.convolve2d(z[i, j], k2, mode="valid") for j in range(c)])
                    for i in range(n)])
    return out[:, :, ::down, ::down]


@pytest.mark.parametrize("up,down,pad", [(2, 1, (2, 1)), (2, 1, (0, 0)), (2, 1, (5, 4)), (3, 1, (1, 2)),
                                         (1, 2, (1, 1)), (1, 1, (1, 2)), (2, 2, (1, 1))])
def test_upfirdn2d_matches_reference(up, down, pad):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 6, 6))
    k2 = np.outer([1.0, 2.0, 5.0, 1.0], [1.0, 3.0, 3.0, 2.0])     # asymmetric: exercises the flip
    ours = fir.upfirdn2d(torch.from_numpy(x), torch.from_numpy(k2), up=up, down=down, pad=pad)
    np.testing.assert_allclose(ours.numpy(), _upfirdn_ref(x, k2, up, down, pad), rtol=1e-12, atol=1e-12)


def test_fir_resampling_preserves_constants_and_shapes():
    c = torch.ones(1, 2, 8, 8, dtype=torch.float64)
    up = fir.upsample_2d(c, (1, 3, 3, 1))
    down = fir.downsample_2d(c, (1, 3, 3, 1))
    assert up.shape == (1, 2, 16, 16) and down.shape == (1, 2, 4, 4)
    assert torch.allclose(up[..., 2:-2, 2:-2], torch.ones_like(up[..., 2:-2, 2:-2]), atol=1e-12)
    assert torch.allclose(down[..., 1:-1, 1:-1], torch.ones_like(down[..., 1:-1, 1:-1]), atol=1e-12)
    assert torch.equal(fir.naive_upsample_2d(torch.arange(4.).reshape(1, 1, 2, 2)),
                       torch.tensor([[[[0., 0, 1, 1], [0, 0, 1, 1], [2, 2, 3, 3], [2, 2, 3, 3]]]]))
    assert torch.allclose(fir.naive_downsample_2d(c), torch.ones(1, 2, 4, 4, dtype=torch.float64))


def test_fused_upsample_conv_is_full_correlation_of_zero_inserted_input_then_fir():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 5, 5, dtype=torch.float64)
    w = torch.randn(4, 3, 3, 3, dtype=torch.float64)
    ours = fir.upsample_conv_2d(x, w, k=(1, 3, 3, 1))
    z = torch.zeros(2, 3, 9, 9, dtype=torch.float64)
    z[:, :, ::2, ::2] = x
    full = F.conv2d(F.pad(z, (2, 2, 2, 2)), w)                       # [2, 4, 11, 11]
    kk = torch.from_numpy(fir.make_kernel((1, 3, 3, 1)) * 4).double()
    ref = fir.upfirdn2d(full, kk, pad=(1, 1))
    assert ours.shape == (2, 4, 10, 10)
    assert torch.allclose(ours, ref, atol=1e-12)


def test_fused_conv_downsample_is_fir_then_strided_conv():
    torch.manual_seed(1)
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    w = torch.randn(4, 3, 3, 3, dtype=torch.float64)
    ours = fir.conv_downsample_2d(x, w, k=(1, 3, 3, 1))
    kk = torch.from_numpy(fir.make_kernel((1, 3, 3, 1))).double()
    ref = F.conv2d(fir.upfirdn2d(x, kk, pad=(2, 2)), w, stride=2)
    assert ours.shape == (2, 4, 4, 4) and torch.allclose(ours, ref, atol=1e-12)


# ---------------------------------------------------------------------------------------------
# every architecture option builds and runs (small widths, 16x16)

_SMALL = dict(nf=8, ch_mult=(1, 2, 2), num_res_blocks=1, attn_resolutions=(8,), dropout=0.0)


@pytest.mark.parametrize("opts", [
    dict(kind="ncsnpp"),                                                  # VE NCSN++
    dict(kind="ddpmpp"),                                                  # DDPM++
    dict(kind="ncsnpp", embedding_type="positional"),                     # VP NCSN++
    dict(kind="ncsnpp", progressive="output_skip", progressive_input="input_skip"),   # CelebA-HQ
    dict(kind="ncsnpp", progressive="residual", progressive_input="input_skip",
         progressive_combine="cat"),
    dict(kind="ncsnpp", progressive="residual", fir=False, progressive_input="residual"),
    dict(kind="ncsnpp", resblock_type="ddpm", fir=True),                  # FIR Up/Downsample convs
    dict(kind="ncsnpp", resblock_type="ddpm", fir=False, resamp_with_conv=False),
    dict(kind="ncsnpp", resblock_type="ddpm", fir=True, resamp_with_conv=False, skip_rescale=False),
    dict(kind="ddpmpp", conditional=False, nonlinearity="elu"),
])
def test_architecture_options_forward(opts):
    torch.manual_seed(0)
    cfg = dict(_SMALL, **opts)
    cls = {"ncsnpp": NCSNpp, "ddpmpp": DDPMpp}[cfg.pop("kind")]
    net = cls(**cfg, image_size=16, num_channels=3, centered=True).eval()
    x = torch.rand(2, 3, 16, 16)
    labels = torch.tensor([0.5, 3.0]) if cfg.get("embedding_type", "x") != "positional" and \
        cls is NCSNpp else torch.tensor([10.0, 900.0])
    out = net(x, labels)
    assert out.shape == x.shape and torch.isfinite(out).all()
    out.sum().backward()
    # without conditioning the resblocks' Dense_0 exist (as in the original) but stay unused
    assert all(p.grad is not None for n, p in net.named_parameters()
               if p.requires_grad and (cfg.get("conditional", True) or "Dense_0" not in n))


def test_scale_by_sigma_and_uncentred_input():
    torch.manual_seed(0)
    cfg = dict(_SMALL, init_scale=0.5, image_size=16, num_channels=3)
    net = NCSNpp(**cfg, centered=False).eval()
    net_c = NCSNpp(**cfg, scale_by_sigma=False, centered=True).eval()
    net_c.load_state_dict(net.state_dict())
    x = torch.rand(2, 3, 16, 16)
    sig = torch.tensor([0.3, 7.0])
    with torch.no_grad():
        a = net(x, sig)
        b = net_c(2 * x - 1, sig) / sig[:, None, None, None]
    assert torch.allclose(a, b, rtol=1e-5, atol=1e-6)


def test_toy_mlp():
    net = build_network(MLPConfig(), ToyDataConfig(dataset="checkerboard", dim=2))
    names = [n for n, _ in net.named_parameters()]
    assert names[0] == "net.layers.0.weight" and "t_encoder.layers.2.bias" in names
    assert net.net.layers[0].in_features == 256 and net.net.layers[-1].out_features == 2
    assert net.t_encoder.layers[0].in_features == 64
    out = net(torch.randn(5, 2), torch.rand(5))
    assert out.shape == (5, 2)
    one_d = ToyScoreMLP(dim=1)
    assert one_d(torch.randn(7), torch.rand(7)).shape == (7, 1)


def test_ema_update_skips_frozen_parameters():
    torch.manual_seed(0)
    net = NCSNpp(**_SMALL, image_size=16)
    ema = EMA(net.parameters(), decay=0.999)
    assert len(ema.shadow_params) == len(list(net.parameters())) - 1      # Fourier W excluded
    with torch.no_grad():
        for p in net.parameters():
            if p.requires_grad:
                p.add_(1.0)
    before = [s.clone() for s in ema.shadow_params]
    ema.update(net.parameters())
    d = min(0.999, 2 / 11)
    assert torch.allclose(ema.shadow_params[0], before[0] - (1 - d) * (before[0] - (before[0] + 1)))
    assert ema.num_updates == 1


# ---------------------------------------------------------------------------------------------
# forward-mode AD through NCSN++ (nf=8): J·v in x and ∂/∂label, then reverse mode through them

def _ve_small_double():
    torch.manual_seed(0)
    net = NCSNpp(nf=8, init_scale=1.0).double().eval()
    # the zero-scaled ("init_scale=0") output layers would make every derivative ~0
    with torch.no_grad():
        for prm in net.parameters():
            if prm.requires_grad and prm.dim() == 1:
                prm.add_(0.05 * torch.randn_like(prm))
    return net


def test_forward_ad_through_ncsnpp_matches_finite_differences():
    import torch.autograd.forward_ad as fwAD

    net = _ve_small_double()
    torch.manual_seed(1)
    x = torch.rand(2, 3, 32, 32, dtype=torch.float64)
    sig = torch.tensor([0.2, 5.0], dtype=torch.float64)
    v = torch.randn_like(x)

    with fwAD.dual_level():
        out = net(fwAD.make_dual(x, v), sig)
        jv = fwAD.unpack_dual(out).tangent
    h = 1e-5
    with torch.no_grad():
        fd = (net(x + h * v, sig) - net(x - h * v, sig)) / (2 * h)
    assert float((jv - fd).norm() / fd.norm()) < 1e-6

    ones = torch.ones_like(sig)
    with fwAD.dual_level():
        out = net(x, fwAD.make_dual(sig, ones))
        dt = fwAD.unpack_dual(out).tangent
    hs = 1e-6 * sig
    with torch.no_grad():
        fd_t = (net(x, sig + hs) - net(x, sig - hs)) / (2 * hs[:, None, None, None])
    assert float((dt - fd_t).norm() / fd_t.norm()) < 1e-5


def test_forward_ad_through_ddpmpp_in_time_label():
    import torch.autograd.forward_ad as fwAD

    torch.manual_seed(3)
    net = DDPMpp(nf=8, ch_mult=(1, 2), num_res_blocks=1, init_scale=1.0, image_size=16).double().eval()
    x = torch.rand(2, 3, 16, 16, dtype=torch.float64) * 2 - 1
    lab = torch.tensor([30.0, 700.0], dtype=torch.float64)
    with fwAD.dual_level():
        dt = fwAD.unpack_dual(net(x, fwAD.make_dual(lab, torch.ones_like(lab)))).tangent
    h = 1e-4
    with torch.no_grad():
        fd = (net(x, lab + h) - net(x, lab - h)) / (2 * h)
    assert float((dt - fd).norm() / fd.norm()) < 1e-6
    # float32 labels into a float64 network are promoted, not rejected
    assert net(x, lab.float()).dtype == torch.float64


def test_functorch_jvp_and_reverse_over_forward_to_parameters():
    import torch.autograd.forward_ad as fwAD

    net = _ve_small_double()
    torch.manual_seed(2)
    x = torch.rand(1, 3, 32, 32, dtype=torch.float64)
    sig = torch.tensor([1.3], dtype=torch.float64)
    v = torch.randn_like(x)
    u = torch.randn_like(x)

    try:
        from torch.func import jvp          # torch >= 2.0
    except ImportError:
        from functorch import jvp           # torch 1.13
    _, jv_f = jvp(lambda z: net(z, sig), (x,), (v,))

    # reverse over forward: ∂/∂θ <u, J v>
    with fwAD.dual_level():
        jv = fwAD.unpack_dual(net(fwAD.make_dual(x, v), sig)).tangent
    assert torch.allclose(jv, jv_f, rtol=1e-10, atol=1e-12)
    params = [p for p in net.parameters() if p.requires_grad]
    g_fwd = torch.autograd.grad((u * jv).sum(), params, allow_unused=True)

    # the same by double backward: <u, J v> = ∂/∂ε <u, s(x + ε v)> = <Jᵀu, v>
    xr = x.clone().requires_grad_(True)
    jtu = torch.autograd.grad((u * net(xr, sig)).sum(), xr, create_graph=True)[0]
    g_rev = torch.autograd.grad((jtu * v).sum(), params, allow_unused=True)
    def dense(g, p):
        return torch.zeros_like(p) if g is None else g

    pairs = [(dense(a, p), dense(b, p)) for a, b, p in zip(g_fwd, g_rev, params)]
    assert sum(a is not None for a in g_fwd) > len(params) // 2
    num = sum(float((a - b).norm() ** 2) for a, b in pairs) ** 0.5
    den = sum(float(b.norm() ** 2) for _, b in pairs) ** 0.5
    assert den > 0 and num / den < 1e-8


def test_channels_last_and_cpu_bf16_autocast():
    import torch.autograd.forward_ad as fwAD

    torch.manual_seed(0)
    net = NCSNpp(nf=8, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(8,), init_scale=1.0,
                 image_size=16).eval()
    x, sig = torch.rand(2, 3, 16, 16), torch.tensor([0.5, 3.0])
    v = torch.randn_like(x)
    with fwAD.dual_level():
        ref = fwAD.unpack_dual(net(fwAD.make_dual(x, v), sig)).tangent
    cl = torch.channels_last
    net = net.to(memory_format=cl)
    with fwAD.dual_level():       # torch 1.13's GroupNorm tangent needs contiguous input
        jv = fwAD.unpack_dual(net(fwAD.make_dual(x.contiguous(memory_format=cl),
                                                 v.contiguous(memory_format=cl)), sig)).tangent
    assert rel(jv, ref) < 1e-4
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = net(x.contiguous(memory_format=cl), sig)
    with torch.no_grad():
        full = net(x, sig)
    assert torch.isfinite(out).all() and rel(out.float(), full) < 0.1


def rel(a, b):
    return float((a - b).norm() / b.norm())
