"""The flax (score_flow / score_sde JAX) fixtures shipped in test/fixtures/reference/flax, and a
minimal msgpack writer in flax's format for hand-made files (malformed, chunked)."""

from __future__ import annotations

import json
import os
from typing import Any, Dict, Tuple

import msgpack
import numpy as np

FLAX_DIR = os.environ.get(
    "FPD_REFERENCE_FLAX",
    os.path.join(os.path.dirname(__file__), "..", "..", "test", "fixtures", "reference", "flax"))

VP = "score_flow_vp_cifar10_ddpmpp_continuous_nf8_seed0"
VE = "score_sde_ve_cifar10_ncsnpp_continuous_nf8_seed0"
FLAX_FIXTURES = [VP, VE]
#: the fixture → the preset it was made with (all at model.nf = 8)
PRESET = {VP: "vp/cifar10_ddpmpp_continuous", VE: "ve/cifar10_ncsnpp_continuous"}


def ckpt_path(name: str) -> str:
    p = os.path.join(FLAX_DIR, name, "checkpoints", "checkpoint_123")
    if not os.path.isfile(p):
        raise FileNotFoundError(f"flax fixture not found at {p} (it ships in test/fixtures/reference/flax)")
    return p


def workdir(name: str) -> str:
    return os.path.join(FLAX_DIR, name)


def meta(name: str) -> dict:
    with open(os.path.join(FLAX_DIR, f"{name}.json")) as fh:
        return json.load(fh)


def layout(name: str) -> dict:
    with open(os.path.join(FLAX_DIR, f"{name}.layout.json")) as fh:
        return json.load(fh)


def arrays(name: str) -> Dict[str, np.ndarray]:
    with np.load(os.path.join(FLAX_DIR, f"{name}.npz")) as z:
        return {k: z[k] for k in z.files}


def torch_state_dict(name: str) -> Dict[str, np.ndarray]:
    with np.load(os.path.join(FLAX_DIR, f"{name}.torch_state_dict.npz")) as z:
        return {k: z[k] for k in z.files}


def mapping(kind: str) -> dict:
    with open(os.path.join(FLAX_DIR, "mapping", f"{kind}_tree_and_map.json")) as fh:
        return json.load(fh)


# --- writing flax's format (what flax.serialization.to_bytes produces) -------------------------

def ext_array(a: np.ndarray, name: str = "") -> msgpack.ExtType:
    payload = msgpack.packb([list(a.shape), name or a.dtype.name, np.ascontiguousarray(a).tobytes()],
                            use_bin_type=True)
    return msgpack.ExtType(1, payload)


def chunked(a: np.ndarray, chunk: int) -> dict:
    flat = a.reshape(-1)
    parts = [flat[i:i + chunk] for i in range(0, flat.size, chunk)]
    return {"__msgpack_chunked_array__": True, "shape": {str(i): d for i, d in enumerate(a.shape)},
            "chunks": {str(i): ext_array(p) for i, p in enumerate(parts)}}


def read_tree(path: str) -> Dict[str, Any]:
    """The fixture's msgpack tree with arrays decoded (for building variants in tests)."""
    def hook(code: int, data: bytes) -> Any:
        shape, dtype, buf = msgpack.unpackb(data, raw=True)
        return np.frombuffer(buf, dtype=dtype.decode()).reshape(shape).copy()
    with open(path, "rb") as fh:
        return msgpack.unpackb(fh.read(), ext_hook=hook, raw=False)


def write_tree(path: str, tree: Any) -> str:
    def enc(node: Any) -> Any:
        if isinstance(node, np.ndarray):
            return ext_array(node)
        if isinstance(node, dict):
            return {k: enc(v) for k, v in node.items()}
        return node
    with open(path, "wb") as fh:
        fh.write(msgpack.packb(enc(tree), use_bin_type=True))
    return path


def model_and_data(name: str, nf: int = 8) -> Tuple[Any, Any]:
    """(model config, data config) of the fixture's network: its architecture at ``nf``."""
    from fpdiff.models import ARCHITECTURES
    arch = ARCHITECTURES[PRESET[name]].with_model(nf=nf)
    return arch.model, arch.data


def sde_of(name: str):
    """The fixture's SDE (fpdiff.sde), with the constants its JSON records."""
    from fpdiff.sde import VESDE, VPSDE
    s = meta(name)["sde"]
    if s["name"] == "VESDE":
        return VESDE(sigma_min=s["sigma_min"], sigma_max=s["sigma_max"], N=s["N"])
    return VPSDE(beta_min=s["beta_min"], beta_max=s["beta_max"], N=s["N"])
