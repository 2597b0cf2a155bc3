"""The experiment, rebuilt on the Python side and validated again (the wire is never trusted).

The TypeScript DSL (``src/dsl``) sends one camelCase JSON object (docs/contracts.md §1). This module
turns it into frozen dataclasses with snake_case fields — the rule: ``_`` before an upper-case letter
that follows a lower-case letter or digit, then lower-case; single-letter keys (``N``) stay — and
checks types (ints are accepted where floats are expected), ranges, unknown keys and the cross-field
rules. Every problem is reported with its field path in the TypeScript form (``loss.terms[1].alpha``)
by :class:`ConfigError`, which the worker turns into a BAD_REQUEST naming that path.

Numerics code receives these dataclasses. This module imports neither torch nor the worker.

Run ``python -m fpdiff.config`` to validate a JSON experiment read from stdin (used by tests).
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import sys
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Optional, Union

# ---------------------------------------------------------------------------------------------
# Errors and names


class ConfigError(ValueError):
    """An invalid experiment. ``path`` is the first problem's field path, ``errors`` all of them."""

    def __init__(self, path: str, message: str, errors: Optional[list[tuple[str, str]]] = None):
        self.path = path
        self.message = message
        self.errors: list[tuple[str, str]] = errors if errors else [(path, message)]
        if len(self.errors) == 1:
            text = f"{path}: {message}" if path else message
        else:
            text = f"{len(self.errors)} problems: " + "; ".join(
                f"{p}: {m}" if p else m for p, m in self.errors
            )
        super().__init__(text)


def to_snake(key: str) -> str:
    """camelCase → snake_case by the wire rule (``N`` stays ``N``)."""
    if len(key) == 1:
        return key
    return re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", key).lower()


def to_camel(name: str) -> str:
    """snake_case → camelCase, the inverse of :func:`to_snake` on the experiment's names."""
    if len(name) == 1:
        return name
    return re.sub(r"_([a-z0-9])", lambda m: m.group(1).upper(), name)


def join(path: str, key: Union[str, int]) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


# ---------------------------------------------------------------------------------------------
# Field checks (attached to dataclass fields as metadata)

Check = Callable[[Any], Optional[str]]


def _num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def gt(bound: float) -> Check:
    return lambda v: None if v > bound else f"Too small: expected number to be >{bound}, got {v!r}"


def ge(bound: float) -> Check:
    return lambda v: None if v >= bound else f"Too small: expected number to be >={bound}, got {v!r}"


def lt(bound: float) -> Check:
    return lambda v: None if v < bound else f"Too big: expected number to be <{bound}, got {v!r}"


def min_items(n: int) -> Check:
    return lambda v: None if len(v) >= n else f"Too small: expected at least {n} item(s), got {len(v)}"


def unique() -> Check:
    return lambda v: None if len(set(v)) == len(v) else "entries must not repeat"


def each(*checks: Check) -> Check:
    def run(v: Any) -> Optional[str]:
        for i, item in enumerate(v):
            for c in checks:
                msg = c(item)
                if msg:
                    return f"[{i}]: {msg}"
        return None

    return run


def name_pattern() -> Check:
    rx = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]*$")
    return lambda v: None if rx.match(v) else (
        "name must start with a letter or digit and use only letters, digits, '.', '_', '-', '/'"
    )


def non_empty() -> Check:
    return lambda v: None if len(v) > 0 else "must not be empty"


def f(default: Any = dataclasses.MISSING, *checks: Check, factory: Any = dataclasses.MISSING) -> Any:
    """A dataclass field with a default (or factory) and value checks."""
    if factory is not dataclasses.MISSING:
        return field(default_factory=factory, metadata={"checks": checks})
    return field(default=default, metadata={"checks": checks})


POS = gt(0)
NONNEG = ge(0)
RATE = (ge(0), lt(1))
UNIT = (gt(0), lt(1))

# ---------------------------------------------------------------------------------------------
# SDEs


@dataclass(frozen=True)
class VESDEConfig:
    kind: Literal["ve"] = "ve"
    sigma_min: float = f(0.01, POS)
    sigma_max: float = f(50.0, POS)
    N: int = f(1000, POS)

    def _checks(self) -> list[tuple[str, str]]:
        if not self.sigma_min < self.sigma_max:
            return [("sigmaMax", "sigmaMin must be smaller than sigmaMax")]
        return []


@dataclass(frozen=True)
class _BetaSDEConfig:
    """VP and subVP share their schedule β(t) = β_min + t(β_max − β_min); only `kind` differs."""

    kind: str = ""
    beta_min: float = f(0.1, POS)
    beta_max: float = f(20.0, POS)
    N: int = f(1000, POS)

    def _checks(self) -> list[tuple[str, str]]:
        if self.beta_min > self.beta_max:
            return [("betaMax", "betaMin must not exceed betaMax")]
        return []


@dataclass(frozen=True)
class VPSDEConfig(_BetaSDEConfig):
    kind: Literal["vp"] = "vp"


@dataclass(frozen=True)
class SubVPSDEConfig(_BetaSDEConfig):
    kind: Literal["subvp"] = "subvp"


SDEConfig = Union[VESDEConfig, VPSDEConfig, SubVPSDEConfig]

ORIGINAL_SDE_NAME = {"ve": "vesde", "vp": "vpsde", "subvp": "subvpsde"}

# ---------------------------------------------------------------------------------------------
# Models


@dataclass(frozen=True)
class _NCSNppBase:
    """Every field of Score SDE's ``config.model`` for its NCSN++ class (NCSN++ cont. defaults)."""

    nf: int = f(128, POS)
    ch_mult: tuple[int, ...] = f((1, 2, 2, 2), min_items(1), each(POS))
    num_res_blocks: int = f(4, POS)
    attn_resolutions: tuple[int, ...] = f((16,), each(POS))
    dropout: float = f(0.1, *RATE)
    resamp_with_conv: bool = True
    fir: bool = True
    fir_kernel: tuple[int, ...] = f((1, 3, 3, 1), min_items(1))
    skip_rescale: bool = True
    resblock_type: Literal["ddpm", "biggan"] = "biggan"
    progressive: Literal["none", "output_skip", "residual"] = "none"
    progressive_input: Literal["none", "input_skip", "residual"] = "residual"
    progressive_combine: Literal["sum", "cat"] = "sum"
    attention_type: Literal["ddpm"] = "ddpm"
    init_scale: float = f(0.0, NONNEG)
    embedding_type: Literal["fourier", "positional"] = "fourier"
    fourier_scale: float = f(16.0, POS)
    conv_size: int = f(3, POS)
    scale_by_sigma: bool = True
    ema_rate: float = f(0.999, *RATE)
    normalization: Literal["GroupNorm"] = "GroupNorm"
    nonlinearity: Literal["elu", "relu", "lrelu", "swish"] = "swish"
    conditional: bool = True
    sigma_min: float = f(0.01, POS)
    sigma_max: float = f(50.0, POS)
    num_scales: int = f(1000, POS)
    beta_min: float = f(0.1, POS)
    beta_max: float = f(20.0, POS)


@dataclass(frozen=True)
class NCSNppConfig(_NCSNppBase):
    kind: Literal["ncsnpp"] = "ncsnpp"


@dataclass(frozen=True)
class DDPMppConfig(_NCSNppBase):
    """DDPM++ is Score SDE's NCSN++ class with the VP CIFAR-10 continuous defaults."""

    kind: Literal["ddpmpp"] = "ddpmpp"
    fir: bool = False
    progressive_input: Literal["none", "input_skip", "residual"] = "none"
    embedding_type: Literal["fourier", "positional"] = "positional"
    scale_by_sigma: bool = False
    ema_rate: float = f(0.9999, *RATE)


@dataclass(frozen=True)
class MLPConfig:
    """The high-order paper's toy network; ``param='eps'``: score = output / std(t)."""

    kind: Literal["mlp"] = "mlp"
    embed_dim: int = f(64, POS)
    time_hidden: tuple[int, ...] = f((128, 128), each(POS))
    x_hidden: tuple[int, ...] = f((128, 128), each(POS))
    width: int = f(128, POS)
    hidden: tuple[int, ...] = f((512, 512), each(POS))
    nonlinearity: Literal["swish", "relu", "elu", "tanh"] = "swish"
    ema_rate: float = f(0.999, *RATE)
    param: Literal["eps", "score"] = "eps"


ModelConfig = Union[NCSNppConfig, DDPMppConfig, MLPConfig]
ImageModelConfig = Union[NCSNppConfig, DDPMppConfig]

# ---------------------------------------------------------------------------------------------
# Data

TOY_DIMS: dict[str, Optional[int]] = {
    "checkerboard": 2,
    "mog1d": 1,
    "mog2d": 2,
    "rings": 2,
    "moons": 2,
    "swissroll": 2,
    "gaussian": None,
}
ToyDataset = Literal["checkerboard", "mog1d", "mog2d", "rings", "moons", "swissroll", "gaussian"]


def _literal_msg(value: Any, message: str) -> Check:
    return lambda v: None if v == value else message


@dataclass(frozen=True)
class CIFAR10Config:
    kind: Literal["cifar10"] = "cifar10"
    path: Optional[str] = f(None, non_empty())
    image_size: int = f(32, _literal_msg(32, "this data set is 32×32: imageSize must be 32"))
    num_channels: int = f(3, _literal_msg(3, "this data set is RGB: numChannels must be 3"))
    centered: bool = False
    random_flip: bool = True
    uniform_dequantization: bool = False


@dataclass(frozen=True)
class ImageNet32Config:
    kind: Literal["imagenet32"] = "imagenet32"
    path: Optional[str] = f(None, non_empty())
    image_size: int = f(32, _literal_msg(32, "this data set is 32×32: imageSize must be 32"))
    num_channels: int = f(3, _literal_msg(3, "this data set is RGB: numChannels must be 3"))
    centered: bool = False
    random_flip: bool = False
    uniform_dequantization: bool = False


@dataclass(frozen=True)
class ToyDataConfig:
    kind: Literal["toy"] = "toy"
    dataset: ToyDataset = "checkerboard"
    dim: Optional[int] = f(None, POS)
    scale: Optional[float] = f(None, POS)


DataConfig = Union[CIFAR10Config, ImageNet32Config, ToyDataConfig]
ImageDataConfig = Union[CIFAR10Config, ImageNet32Config]
_REQUIRED = {ToyDataConfig: ("dataset",)}


def is_image_data(d: Any) -> bool:
    return isinstance(d, (CIFAR10Config, ImageNet32Config))


def data_dim(d: DataConfig) -> int:
    """The data dimension D (C·H·W for images)."""
    if isinstance(d, ToyDataConfig):
        assert d.dim is not None
        return d.dim
    return d.num_channels * d.image_size * d.image_size


# ---------------------------------------------------------------------------------------------
# Loss terms


@dataclass(frozen=True)
class DSMTerm:
    kind: Literal["dsm"] = "dsm"
    weighting: Literal["conventional", "likelihood"] = "conventional"
    importance_sampling: bool = False
    reduce: Literal["mean", "sum"] = "sum"
    eps: float = f(1e-5, *UNIT)


@dataclass(frozen=True)
class HighOrderLambdas:
    second: float = f(1.0, NONNEG)
    third: float = f(1.0, NONNEG)


@dataclass(frozen=True)
class HighOrderTerm:
    kind: Literal["highOrder"] = "highOrder"
    order: Literal[2, 3] = 2
    parts: tuple[Literal["frobenius", "trace"], ...] = f(("frobenius", "trace"), min_items(1), unique())
    lambdas: HighOrderLambdas = f(factory=HighOrderLambdas)
    estimator: Literal["exact", "hutchinson"] = "hutchinson"
    probe: Literal["rademacher", "gaussian"] = "rademacher"


@dataclass(frozen=True)
class FiniteDifferenceSteps:
    hs: float = f(1e-3, POS)
    hd: float = f(5e-4, POS)


@dataclass(frozen=True)
class FiniteDifference:
    finite_difference: FiniteDifferenceSteps = f(factory=FiniteDifferenceSteps)


@dataclass(frozen=True)
class ScoreFPETerm:
    kind: Literal["scoreFpe"] = "scoreFpe"
    mode: Literal["scalar", "vector", "both"] = "both"
    alpha: float = f(0.15, NONNEG)
    beta: float = f(0.01, NONNEG)
    m: float = f(2.0, POS)
    weighting: Literal["constant", "convention", "ll"] = "ll"
    points: Literal["pert", "x", "random"] = "pert"
    dt: Union[Literal["autodiff"], FiniteDifference] = "autodiff"
    div: Literal["exact", "hutchinson"] = "hutchinson"
    probe: Literal["gaussian", "rademacher"] = "gaussian"


LossTerm = Union[DSMTerm, HighOrderTerm, ScoreFPETerm]


@dataclass(frozen=True)
class LossConfig:
    terms: tuple[LossTerm, ...] = f(dataclasses.MISSING, min_items(1), factory=tuple)


_REQUIRED[LossConfig] = ("terms",)
_REQUIRED[HighOrderTerm] = ("order",)
_MESSAGES = {
    (HighOrderTerm, "order"): "order must be 2 or 3",
    (ScoreFPETerm, "dt"): 'dt must be "autodiff" or {finiteDifference: {hs, hd}}',
}

# ---------------------------------------------------------------------------------------------
# Optimiser, training, evaluation, sampling


@dataclass(frozen=True)
class AdamConfig:
    kind: Literal["adam"] = "adam"
    lr: float = f(2e-4, POS)
    beta1: float = f(0.9, *RATE)
    eps: float = f(1e-8, POS)
    weight_decay: float = f(0.0, NONNEG)
    warmup: int = f(5000, NONNEG)
    grad_clip: float = 1.0  # negative: no clipping (as the original)


OptimConfig = Union[AdamConfig]


@dataclass(frozen=True)
class TrainingConfig:
    batch_size: int = f(128, POS)
    n_iters: int = f(1300001, POS)
    snapshot_freq: int = f(50000, POS)
    snapshot_freq_for_preemption: int = f(10000, POS)
    log_freq: int = f(50, POS)
    eval_freq: int = f(100, POS)
    snapshot_sampling: bool = True
    seed: int = f(42, NONNEG)
    deterministic: bool = False
    continuous: Literal[True] = True
    tensorboard: bool = True
    snapshot_bpd: int = f(0, NONNEG)
    snapshot_samples: Optional[int] = f(None, POS)  # absent: batchSize


_MESSAGES[(TrainingConfig, "continuous")] = "only continuous-time training is supported"


@dataclass(frozen=True)
class BpdConfig:
    dataset: Literal["test", "train"] = "test"
    repeats: int = f(1, POS)
    solver: Literal["dopri5", "rk4", "euler"] = "dopri5"
    rtol: float = f(1e-5, POS)
    atol: float = f(1e-5, POS)
    eps: float = f(1e-5, *UNIT)
    probe: Literal["rademacher", "gaussian"] = "rademacher"
    divergence: Optional[Literal["hutchinson", "exact"]] = None  # resolved: images hutchinson, toys exact
    dequantize: Optional[bool] = None  # resolved: images True, toys False


@dataclass(frozen=True)
class EvalConfig:
    batch_size: int = f(1024, POS)
    begin_ckpt: int = f(9, NONNEG)
    end_ckpt: int = f(26, NONNEG)
    enable_sampling: bool = False
    num_samples: int = f(50000, POS)
    enable_loss: bool = True
    enable_bpd: bool = False
    bpd: BpdConfig = f(factory=BpdConfig)

    def _checks(self) -> list[tuple[str, str]]:
        if self.begin_ckpt > self.end_ckpt:
            return [("endCkpt", "beginCkpt must not exceed endCkpt")]
        return []


@dataclass(frozen=True)
class PCSamplingConfig:
    method: Literal["pc"] = "pc"
    predictor: Literal["reverse_diffusion", "euler_maruyama", "none"] = "reverse_diffusion"
    corrector: Literal["langevin", "none"] = "langevin"
    snr: float = f(0.16, POS)
    n_steps_each: int = f(1, POS)
    noise_removal: bool = True
    probability_flow: bool = False
    N: Optional[int] = f(None, POS)  # resolved: the SDE's N
    eps: Optional[float] = f(None, *UNIT)  # resolved: 1e-5 (VE), 1e-3 (VP / subVP)

    def _checks(self) -> list[tuple[str, str]]:
        if self.predictor == "none" and self.corrector == "none":
            return [("corrector", 'a PC sampler needs a predictor or a corrector (both are "none")')]
        return []


@dataclass(frozen=True)
class ODESamplingConfig:
    method: Literal["ode"] = "ode"
    solver: Literal["dopri5", "rk4", "euler"] = "dopri5"
    rtol: float = f(1e-5, POS)
    atol: float = f(1e-5, POS)
    noise_removal: bool = True
    eps: Optional[float] = f(None, *UNIT)


SamplingConfig = Union[PCSamplingConfig, ODESamplingConfig]

# ---------------------------------------------------------------------------------------------
# The experiment


@dataclass(frozen=True)
class ExperimentConfig:
    name: str = f("", name_pattern())
    description: Optional[str] = None
    sde: SDEConfig = f(factory=VESDEConfig)
    model: ModelConfig = f(factory=NCSNppConfig)
    data: DataConfig = f(factory=CIFAR10Config)
    loss: LossConfig = f(factory=LossConfig)
    optim: OptimConfig = f(factory=AdamConfig)
    training: TrainingConfig = f(factory=TrainingConfig)
    eval: EvalConfig = f(factory=EvalConfig)
    sampling: Optional[SamplingConfig] = None  # resolved: Score SDE's PC sampler for the SDE


_REQUIRED[ExperimentConfig] = ("name", "sde", "model", "data", "loss")

EXACT_JACOBIAN_MAX_DIM = 64

# ---------------------------------------------------------------------------------------------
# The generic reader: JSON value + annotation → value, collecting (path, message) problems

_INVALID = object()


def _type_name(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, (int, float)):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, (list, tuple)):
        return "array"
    if isinstance(v, dict):
        return "object"
    return type(v).__name__


def _is_union(tp: Any) -> bool:
    return typing.get_origin(tp) is Union or isinstance(tp, types.UnionType)


def _discriminator(cls: type) -> Optional[str]:
    hints = typing.get_type_hints(cls)
    for key in ("kind", "method"):
        if key in hints and typing.get_origin(hints[key]) is Literal:
            return key
    return None


class _Reader:
    def __init__(self) -> None:
        self.errors: list[tuple[str, str]] = []

    def err(self, path: str, message: str) -> Any:
        self.errors.append((path, message))
        return _INVALID

    def read(self, tp: Any, raw: Any, path: str, message: Optional[str] = None) -> Any:
        if tp is float:
            if not _num(raw) or not math.isfinite(raw):
                return self.err(path, f"Invalid input: expected number, received {_type_name(raw)}")
            return float(raw)
        if tp is int:
            if _num(raw) and float(raw).is_integer():
                return int(raw)
            if _num(raw):
                return self.err(path, f"Invalid input: expected int, received number {raw!r}")
            return self.err(path, f"Invalid input: expected int, received {_type_name(raw)}")
        if tp is bool:
            if not isinstance(raw, bool):
                return self.err(path, f"Invalid input: expected boolean, received {_type_name(raw)}")
            return raw
        if tp is str:
            if not isinstance(raw, str):
                return self.err(path, f"Invalid input: expected string, received {_type_name(raw)}")
            return raw
        origin = typing.get_origin(tp)
        if origin is Literal:
            options = typing.get_args(tp)
            for opt in options:
                if raw == opt and type(raw) is type(opt):
                    return raw
                if isinstance(opt, int) and not isinstance(opt, bool) and _num(raw) and raw == opt and not isinstance(raw, bool):
                    return opt
            return self.err(
                path, message or "Invalid option: expected one of " + "|".join(json.dumps(o) for o in options)
            )
        if _is_union(tp):
            return self._union(tp, raw, path, message)
        if origin is tuple:
            args = typing.get_args(tp)
            if not isinstance(raw, (list, tuple)):
                return self.err(path, f"Invalid input: expected array, received {_type_name(raw)}")
            item_tp = args[0]
            out = [self.read(item_tp, item, join(path, i)) for i, item in enumerate(raw)]
            return _INVALID if any(o is _INVALID for o in out) else tuple(out)
        if dataclasses.is_dataclass(tp):
            return self.dataclass(tp, raw, path)
        raise TypeError(f"config reader: unsupported annotation {tp!r}")

    def _union(self, tp: Any, raw: Any, path: str, message: Optional[str]) -> Any:
        options = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(options) == 1:
            return self.read(options[0], raw, path, message)
        classes = [o for o in options if dataclasses.is_dataclass(o)]
        others = [o for o in options if not dataclasses.is_dataclass(o)]
        if classes and not others:
            key = _discriminator(classes[0])
            assert key is not None, f"union of {classes} has no discriminator"
            if not isinstance(raw, dict):
                return self.err(path, f"Invalid input: expected object, received {_type_name(raw)}")
            values = {typing.get_args(typing.get_type_hints(c)[key])[0]: c for c in classes}
            if not isinstance(raw.get(key), str) or raw[key] not in values:
                expected = " | ".join(f"'{v}'" for v in values)
                return self.err(join(path, key), f"Invalid discriminator value. Expected {expected}")
            return self.dataclass(values[raw[key]], raw, path)
        # A literal or an object (e.g. dt: "autodiff" | {finiteDifference}): objects go to the class.
        if isinstance(raw, dict) and classes:
            return self.dataclass(classes[0], raw, path)
        for o in others:
            probe = _Reader()
            value = probe.read(o, raw, path)
            if value is not _INVALID:
                return value
        return self.err(path, message or "Invalid input")

    def dataclass(self, cls: type, raw: Any, path: str) -> Any:
        if not isinstance(raw, dict):
            return self.err(path, f"Invalid input: expected object, received {_type_name(raw)}")
        hints = typing.get_type_hints(cls)
        fields = {to_camel(fl.name): fl for fl in dataclasses.fields(cls)}
        before = len(self.errors)
        for key in raw:
            if key not in fields:
                self.err(join(path, str(key)), "unknown key")
        required = _REQUIRED.get(cls, ())
        kwargs: dict[str, Any] = {}
        for wire, fl in fields.items():
            p = join(path, wire)
            tp = hints[fl.name]
            optional = _is_union(tp) and type(None) in typing.get_args(tp)
            if wire not in raw or (raw[wire] is None and optional):
                if fl.name in required:
                    self.err(p, _MESSAGES.get((cls, fl.name)) or "Invalid input: required")
                continue  # the dataclass default
            value = self.read(tp, raw[wire], p, _MESSAGES.get((cls, fl.name)))
            if value is _INVALID:
                continue
            if value is not None:
                for check in fl.metadata.get("checks", ()):
                    msg = check(value)
                    if msg:
                        self.err(p, msg)
                        break
            kwargs[fl.name] = value
        if len(self.errors) > before:
            return _INVALID
        obj = cls(**kwargs)
        checks = getattr(obj, "_checks", None)
        if checks is not None:
            for rel, msg in checks():
                self.err(join(path, rel), msg)
            if len(self.errors) > before:
                return _INVALID
        return obj


# ---------------------------------------------------------------------------------------------
# Resolution of context-dependent defaults, cross-field rules, warnings


def default_sampling_eps(sde: SDEConfig) -> float:
    """Score SDE's smallest sampling time: 1e-5 for VE, 1e-3 for VP / subVP."""
    return 1e-5 if isinstance(sde, VESDEConfig) else 1e-3


def _resolve(e: ExperimentConfig) -> ExperimentConfig:
    replace = dataclasses.replace
    data = e.data
    if isinstance(data, ToyDataConfig) and data.dim is None:
        data = replace(data, dim=TOY_DIMS[data.dataset] or 2)
    s = e.sampling
    if s is None:
        if isinstance(e.sde, VESDEConfig):
            s = PCSamplingConfig(predictor="reverse_diffusion", corrector="langevin")
        else:
            s = PCSamplingConfig(predictor="euler_maruyama", corrector="none")
    eps = s.eps if s.eps is not None else default_sampling_eps(e.sde)
    if isinstance(s, PCSamplingConfig):
        s = replace(s, N=s.N if s.N is not None else e.sde.N, eps=eps)
    else:
        s = replace(s, eps=eps)
    image = is_image_data(data)
    bpd = e.eval.bpd
    bpd = replace(
        bpd,
        dequantize=bpd.dequantize if bpd.dequantize is not None else image,
        divergence=bpd.divergence if bpd.divergence is not None else ("hutchinson" if image else "exact"),
    )
    return replace(e, data=data, sampling=s, eval=replace(e.eval, bpd=bpd))


def _terms(e: ExperimentConfig, cls: type) -> list[tuple[int, Any]]:
    return [(i, t) for i, t in enumerate(e.loss.terms) if isinstance(t, cls)]


def _fmt(v: Any) -> str:
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return json.dumps(v) if isinstance(v, str) else str(v)


def cross_field_errors(e: ExperimentConfig) -> list[tuple[str, str]]:
    """Rules that span fields, on a resolved experiment (same rules and paths as the TS DSL)."""
    errs: list[tuple[str, str]] = []
    sde, model, data = e.sde, e.model, e.data
    D = data_dim(data)
    image_model = isinstance(model, (NCSNppConfig, DDPMppConfig))

    if isinstance(model, MLPConfig) and is_image_data(data):
        errs.append(("model.kind", f"an mlp model needs toy data, but data.kind is {json.dumps(data.kind)}; use an ncsnpp or ddpmpp model for images"))
    if image_model and not is_image_data(data):
        errs.append(("model.kind", f"an {model.kind} model needs image data, but data.kind is \"toy\"; use an mlp model for toy data"))
    if isinstance(data, ToyDataConfig):
        want = TOY_DIMS[data.dataset]
        if want is not None and data.dim != want:
            errs.append(("data.dim", f"{data.dataset} lives in {want} dimension{'' if want == 1 else 's'}, got dim {data.dim}"))

    if image_model:
        def mirror(name: str, sde_value: float) -> None:
            mine = getattr(model, to_snake(name))
            if mine != sde_value:
                errs.append((f"model.{name}", f"must equal sde.{name} ({_fmt(sde_value)}), got {_fmt(mine)}: the original keeps one field for both (the network builds its sigma buffer from it); set both"))

        if isinstance(sde, VESDEConfig):
            mirror("sigmaMin", sde.sigma_min)
            mirror("sigmaMax", sde.sigma_max)
        else:
            mirror("betaMin", sde.beta_min)
            mirror("betaMax", sde.beta_max)
        if model.num_scales != sde.N:
            errs.append(("model.numScales", f"must equal sde.N ({sde.N}), got {model.num_scales}: the original keeps one field (model.num_scales) for both; set both"))
        if is_image_data(data):
            levels = len(model.ch_mult)
            factor = 2 ** (levels - 1)
            if data.image_size % factor:
                errs.append(("model.chMult", f"{levels} resolution levels halve the image {levels - 1} times, which needs imageSize divisible by {factor}, got {data.image_size}"))
            else:
                resolutions = [data.image_size // 2**i for i in range(levels)]
                for i, r in enumerate(model.attn_resolutions):
                    if r not in resolutions:
                        errs.append((f"model.attnResolutions[{i}]", f"{r} is not a resolution of this network ({', '.join(map(str, resolutions))})"))

    terms = e.loss.terms
    first: dict[str, int] = {}
    for i, t in enumerate(terms):
        if t.kind in first:
            errs.append((f"loss.terms[{i}].kind", f"a second {json.dumps(t.kind)} term (loss.terms[{first[t.kind]}] is one already); a loss holds at most one term of each kind"))
        else:
            first[t.kind] = i
    dsm_terms = _terms(e, DSMTerm)
    dsm = dsm_terms[0] if dsm_terms else None
    for i, t in dsm_terms:
        if t.importance_sampling and t.weighting != "likelihood":
            errs.append((f"loss.terms[{i}].importanceSampling", 'importance sampling of t goes with likelihood weighting; set weighting: "likelihood" or importanceSampling: false'))
    for i, t in _terms(e, HighOrderTerm):
        if is_image_data(data) and dsm is not None and dsm[1].reduce != "mean":
            errs.append((f"loss.terms[{dsm[0]}].reduce", f'a high-order image loss needs reduce: "mean" (its terms are per-dimension means; the original asserts reduce_mean), got {json.dumps(dsm[1].reduce)}'))
        if t.estimator == "exact" and D > EXACT_JACOBIAN_MAX_DIM:
            errs.append((f"loss.terms[{i}].estimator", f'the exact high-order estimator builds full D×D Jacobians and allows D ≤ {EXACT_JACOBIAN_MAX_DIM}; this data has D = {D}: use estimator: "hutchinson"'))
    for i, t in _terms(e, ScoreFPETerm):
        if isinstance(t.dt, FiniteDifference) and not isinstance(sde, VESDEConfig):
            hs = t.dt.finite_difference.hs
            t_min = dsm[1].eps if dsm else 1e-5
            if hs > t_min:
                errs.append((f"loss.terms[{i}].dt.finiteDifference.hs", f'the finite difference evaluates s at t − hs, below 0 for t < {_fmt(hs)} (the smallest t is {_fmt(t_min)}), where the {sde.kind.upper()} std is NaN; use dt: "autodiff", or hs ≤ {_fmt(t_min)}'))

    if not is_image_data(data) and e.eval.bpd.dequantize:
        errs.append(("eval.bpd.dequantize", "toy data are continuous: dequantize must be false"))
    return errs


def lint(e: ExperimentConfig) -> list[tuple[str, str]]:
    """Unusual but legal combinations (the TS DSL reports the same, at the same paths)."""
    warns: list[tuple[str, str]] = []
    sde, model, data = e.sde, e.model, e.data
    D = data_dim(data)
    ve = isinstance(sde, VESDEConfig)
    if isinstance(model, (NCSNppConfig, DDPMppConfig)):
        if ve and isinstance(model, DDPMppConfig):
            warns.append(("model.kind", "a DDPM++ model with a VE SDE is unusual: the originals pair VE with NCSN++ (Fourier embedding, scaleBySigma)"))
        if ve and model.embedding_type == "positional":
            warns.append(("model.embeddingType", "VE feeds the network the label σ(t); a positional embedding expects 999·t (VP / subVP)"))
        if not ve and model.embedding_type == "fourier":
            warns.append(("model.embeddingType", f"{sde.kind} feeds the network the label 999·t; the Fourier embedding expects σ(t) (VE)"))
        if not ve and model.scale_by_sigma:
            warns.append(("model.scaleBySigma", f"scaleBySigma divides the output by the VE σ of the label, but {sde.kind} already divides by std(t)"))
    terms = e.loss.terms
    if any(isinstance(t, HighOrderTerm) for t in terms) and not any(isinstance(t, DSMTerm) for t in terms):
        warns.append(("loss.terms", "a highOrder term without a dsm term: the error bounds of ℓ₂ / ℓ₃ assume ℓ₁ is trained too"))
    for i, t in enumerate(terms):
        if isinstance(t, DSMTerm) and t.importance_sampling and ve:
            warns.append((f"loss.terms[{i}].importanceSampling", "for VE the importance density g²/std² is uniform; importance sampling only drops the constant weight"))
        if isinstance(t, ScoreFPETerm):
            if t.mode != "scalar" and t.alpha == 0:
                warns.append((f"loss.terms[{i}].alpha", f"alpha = 0 switches the vector term of mode {json.dumps(t.mode)} off"))
            if t.mode != "vector" and t.beta == 0:
                warns.append((f"loss.terms[{i}].beta", f"beta = 0 switches the scalar term of mode {json.dumps(t.mode)} off"))
            if t.div == "exact" and D > EXACT_JACOBIAN_MAX_DIM:
                warns.append((f"loss.terms[{i}].div", f"the exact divergence costs D = {D} backward passes per step"))
    if e.eval.bpd.divergence == "exact" and D > EXACT_JACOBIAN_MAX_DIM:
        warns.append(("eval.bpd.divergence", f"the exact divergence costs D = {D} backward passes per ODE function evaluation"))
    return warns


# ---------------------------------------------------------------------------------------------
# Public entry points


def experiment_from_wire(raw: Any) -> ExperimentConfig:
    """Validates a camelCase experiment from the wire and returns the resolved dataclasses.

    Raises :class:`ConfigError` naming the first problem's path (all problems in ``.errors``).
    """
    reader = _Reader()
    exp = reader.read(ExperimentConfig, raw, "")
    if exp is _INVALID:
        path, message = reader.errors[0]
        raise ConfigError(path, message, reader.errors)
    exp = _resolve(exp)
    errs = cross_field_errors(exp)
    if errs:
        raise ConfigError(errs[0][0], errs[0][1], errs)
    return exp


validate = experiment_from_wire


def section_from_wire(tp: Any, raw: Any, path: str) -> Any:
    """Reads one part of an experiment (e.g. ``SDEConfig``) on its own; errors name ``path``."""
    reader = _Reader()
    value = reader.read(tp, raw, path)
    if value is _INVALID:
        p, message = reader.errors[0]
        raise ConfigError(p, message, reader.errors)
    return value


def to_wire(value: Any) -> Any:
    """Dataclasses → the camelCase JSON object (absent optional fields are left out)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out = {}
        for fl in dataclasses.fields(value):
            v = getattr(value, fl.name)
            if v is None:
                continue
            out[to_camel(fl.name)] = to_wire(v)
        return out
    if isinstance(value, (tuple, list)):
        return [to_wire(v) for v in value]
    return value


def to_dict(value: Any) -> Any:
    """Dataclasses → plain snake_case dicts (for numerics code that prefers dicts)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {fl.name: to_dict(getattr(value, fl.name)) for fl in dataclasses.fields(value)}
    if isinstance(value, (tuple, list)):
        return [to_dict(v) for v in value]
    return value


def check(raw: Any) -> dict[str, Any]:
    """Validation as a JSON-able answer: ``{ok, experiment, warnings}`` or ``{ok: False, errors}``."""
    try:
        exp = experiment_from_wire(raw)
    except ConfigError as err:
        return {"ok": False, "errors": [{"path": p, "message": m} for p, m in err.errors]}
    return {
        "ok": True,
        "experiment": to_wire(exp),
        "warnings": [{"path": p, "message": m} for p, m in lint(exp)],
    }


def _main() -> int:
    """stdin: one experiment, or a list of them; stdout: the answer of :func:`check` for each."""
    raw = json.load(sys.stdin)
    answer = [check(r) for r in raw] if isinstance(raw, list) else check(raw)
    json.dump(answer, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(_main())
