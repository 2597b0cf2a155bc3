"""Model/data settings of the Score SDE CIFAR-10 continuous-time configs (facts, not code).

These are the architectures whose pretrained checkpoints fpdiff loads. They serve three purposes:
defaults for a partial model config of kind ``ncsnpp`` / ``ddpmpp``, naming the preset(s) whose
state-dict layout an unknown checkpoint has, and tests. The DSL keeps its own (TypeScript) presets;
a model config that comes over the wire is always complete and never needs these.
"""

from __future__ import annotations

from typing import Dict

# shared by every NCSN++-class CIFAR-10 config (Score SDE's default_cifar10_configs + ncsnpp)
_COMMON = dict(
    sigma_min=0.01, sigma_max=50.0, num_scales=1000, beta_min=0.1, beta_max=20.0,
    dropout=0.1, normalization="GroupNorm", nonlinearity="swish", nf=128, ch_mult=(1, 2, 2, 2),
    num_res_blocks=4, attn_resolutions=(16,), resamp_with_conv=True, conditional=True,
    fir_kernel=(1, 3, 3, 1), skip_rescale=True, resblock_type="biggan", progressive="none",
    progressive_combine="sum", attention_type="ddpm", init_scale=0.0, fourier_scale=16,
    conv_size=3,
)

# NCSN++ as used for VE (Fourier embedding of sigma, output divided by sigma, FIR, residual input)
NCSNPP_VE = dict(_COMMON, kind="ncsnpp", embedding_type="fourier", scale_by_sigma=True,
                 ema_rate=0.999, fir=True, progressive_input="residual")
# NCSN++ as used for VP / subVP (positional embedding of 999 t)
NCSNPP_VP = dict(_COMMON, kind="ncsnpp", embedding_type="positional", scale_by_sigma=False,
                 ema_rate=0.9999, fir=True, progressive_input="residual")
# DDPM++ (same class, no FIR, no input pyramid)
DDPMPP = dict(_COMMON, kind="ddpmpp", embedding_type="positional", scale_by_sigma=False,
              ema_rate=0.9999, fir=False, progressive_input="none")

CIFAR10_UNCENTERED = dict(kind="cifar10", image_size=32, num_channels=3, centered=False)
CIFAR10_CENTERED = dict(kind="cifar10", image_size=32, num_channels=3, centered=True)


def _deep(cfg: dict) -> dict:
    return dict(cfg, num_res_blocks=8)


#: name (the original config's path) -> {"sde", "model", "data"}
PRESETS: Dict[str, dict] = {
    "ve/cifar10_ncsnpp_continuous": dict(sde="ve", model=NCSNPP_VE, data=CIFAR10_UNCENTERED),
    "ve/cifar10_ncsnpp_deep_continuous": dict(sde="ve", model=_deep(NCSNPP_VE),
                                              data=CIFAR10_UNCENTERED),
    "vp/cifar10_ddpmpp_continuous": dict(sde="vp", model=DDPMPP, data=CIFAR10_CENTERED),
    "vp/cifar10_ddpmpp_deep_continuous": dict(sde="vp", model=_deep(DDPMPP), data=CIFAR10_CENTERED),
    "subvp/cifar10_ddpmpp_continuous": dict(sde="subvp", model=DDPMPP, data=CIFAR10_CENTERED),
    "subvp/cifar10_ddpmpp_deep_continuous": dict(sde="subvp", model=_deep(DDPMPP),
                                                 data=CIFAR10_CENTERED),
    "vp/cifar10_ncsnpp_continuous": dict(sde="vp", model=NCSNPP_VP, data=CIFAR10_CENTERED),
    "vp/cifar10_ncsnpp_deep_continuous": dict(sde="vp", model=_deep(NCSNPP_VP),
                                              data=CIFAR10_CENTERED),
    "subvp/cifar10_ncsnpp_continuous": dict(sde="subvp", model=NCSNPP_VP, data=CIFAR10_CENTERED),
    "subvp/cifar10_ncsnpp_deep_continuous": dict(sde="subvp", model=_deep(NCSNPP_VP),
                                                 data=CIFAR10_CENTERED),
}

#: defaults filled in for a model config of the given kind
KIND_DEFAULTS: Dict[str, dict] = {"ncsnpp": NCSNPP_VE, "ddpmpp": DDPMPP}

#: the toy MLP of FACTS §4 (contracts.md names)
MLP_DEFAULTS = dict(kind="mlp", embed_dim=64, time_hidden=(128, 128), x_hidden=(128, 128),
                    width=128, hidden=(512, 512), nonlinearity="swish", ema_rate=0.999,
                    param="eps")


def preset(name: str) -> dict:
    """A copy of one preset ({"sde", "model", "data"}); KeyError lists the known names."""
    try:
        p = PRESETS[name]
    except KeyError:
        raise KeyError(f"unknown model preset {name!r}; known: {', '.join(sorted(PRESETS))}") from None
    return {"sde": p["sde"], "model": dict(p["model"]), "data": dict(p["data"])}
