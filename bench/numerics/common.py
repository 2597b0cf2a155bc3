"""Shared by the numerics benchmarks: common options, machine record, timing, a training step, JSON
output, and loading the original mle_score_ode toy code *in place* (executed from its own checkout,
never copied here)."""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import statistics
import sys
import time
import types
from typing import Any, Callable

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
RESULTS = os.path.join(ROOT, "bench", "results")
sys.path.insert(0, os.path.join(ROOT, "py"))

ORIG_MLE = os.environ.get("FPD_ORIGINAL_MLE_SCORE_ODE", "/work/orig/LuChengTHU+mle_score_ode")


def arguments() -> argparse.ArgumentParser:
    """A benchmark's parser with the options every one takes: --device, --threads, --out."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: leave the default)")
    ap.add_argument("--out", help="result file (default bench/results/<benchmark>_<device>_<time>.json)")
    return ap


def parse(ap: argparse.ArgumentParser) -> argparse.Namespace:
    """The options, with torch's threads set as --threads asks."""
    import torch

    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    return a


def machine(device: str) -> dict[str, Any]:
    import numpy
    import torch

    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    info: dict[str, Any] = {
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "host": platform.node(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "platform": f"{platform.system()} {platform.release()} {platform.machine()}",
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "device": device,
    }
    try:
        import scipy
        import torchdiffeq

        info["scipy"] = scipy.__version__
        info["torchdiffeq"] = getattr(torchdiffeq, "__version__", "unknown")
    except ImportError:
        pass
    try:
        info["load_average"] = [round(v, 2) for v in os.getloadavg()]
    except OSError:
        pass
    try:
        with open("/proc/meminfo") as fh:
            info["memory_gib"] = round(int(fh.readline().split()[1]) / 2 ** 20, 1)
    except OSError:
        pass
    if device.startswith("cuda") and torch.cuda.is_available():
        props = torch.cuda.get_device_properties(torch.device(device))
        info.update(gpu=props.name, gpu_memory_gib=round(props.total_memory / 2 ** 30, 1),
                    cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version())
    return info


def sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(fn: Callable[[], Any], device: str) -> float:
    sync(device)
    t0 = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - t0


def interleaved(fns: dict[str, Callable[[], Any]], device: str, repeats: int, warmup: int = 1) -> dict[str, dict]:
    """Run every function `repeats` times in rotation (so load from other processes hits all of
    them alike); report median, min and all times per name."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            times[k].append(timed(fn, device))
    return {k: {"median_s": statistics.median(v), "min_s": min(v), "times_s": [round(x, 5) for x in v]}
            for k, v in times.items()}


def wire_loss(terms: list[dict]) -> Any:
    """The loss expression of terms written as on the wire (camelCase), read as the worker reads them."""
    from fpdiff import schema
    from fpdiff.losses import build_loss

    return build_loss(schema.parse("$defs/LossConfig", {"terms": terms}))


def train_step(loss: Callable[..., Any], model: Any, opt: Any, batch: Callable[[], Any], generator: Any) -> Callable[[], None]:
    """One training step as fpdiff's train loop takes it: a batch, the loss expression's total,
    backward, the gradient norm clipped at 1, the optimiser's update."""
    import torch

    params = [p for group in opt.param_groups for p in group["params"]]

    def step() -> None:
        res = loss(model, batch(), generator=generator)
        opt.zero_grad(set_to_none=True)
        res.total.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()

    return step


def write(name: str, payload: dict[str, Any], out: str | None = None) -> str:
    os.makedirs(RESULTS, exist_ok=True)
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    path = out or os.path.join(RESULTS, f"{name}_{payload['machine']['device'].replace(':', '')}_{stamp}.json")
    with open(path, "w") as fh:
        json.dump(payload, fh, indent=1)
    return path


def load_original_toy(orig_dir: str = ORIG_MLE, workdir: str | None = None) -> dict[str, Any]:
    """Execute mle_score_ode/toy.py from its checkout without its trailing `main()` call and return
    its namespace. Its imports of sklearn (swiss roll only) and tqdm (progress bars only) get
    stand-ins when absent; it creates `toy_fig/` and `experiments/` in `workdir`."""
    import tempfile

    path = os.path.join(orig_dir, "toy.py")
    src = open(path).read()
    cut = src.rstrip().rfind("main()")
    if cut < 0:
        raise RuntimeError(f"{path}: no trailing main() call found")
    src = src[:cut]
    for name in ("sklearn", "sklearn.datasets"):
        if name not in sys.modules:
            try:
                __import__(name)
            except ImportError:
                sys.modules[name] = types.ModuleType(name)
    try:
        import tqdm  # noqa: F401
    except ImportError:
        stub = types.ModuleType("tqdm")
        stub.tqdm = lambda it=None, *a, **k: it  # type: ignore[attr-defined]
        sys.modules["tqdm"] = stub
    sys.path.insert(0, orig_dir)
    old = os.getcwd()
    os.chdir(workdir or tempfile.mkdtemp(prefix="orig_toy_"))
    try:
        ns: dict[str, Any] = {"__name__": "orig_toy", "__file__": path}
        exec(compile(src, path, "exec"), ns)
    finally:
        os.chdir(old)
    return ns
