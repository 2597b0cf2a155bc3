"""Checkpoints: load any accepted format, recognise the network, restore strictly, save, convert
(formats: docs/maths.md §10).

Formats read (told from the content, never the name; a work directory means its newest
``checkpoints/checkpoint_<N>``):

* PyTorch Score SDE files (score_sde_pytorch, FP-Diffusion, fpdiff's own), zip or legacy, and
  plain state dicts (``torch.save`` or safetensors) — read by fpdiff's own reader with one
  allow-list (``fpdiff.safe_pickle``), never by a full unpickler;
* flax training states of score_flow, score_sde (JAX) and mle_score_ode (msgpack, no JAX needed),
  mapped onto fpdiff's NCSN++ / DDPM++ when restored.

fpdiff writes the PyTorch Score SDE format, atomically. One module per job:

``source``     path → file (work directories, FIFOs refused), format sniffing, digest
``torch_file`` ``torch.save`` zip / legacy reader with size checks
``flax_file``  msgpack reader and the flax ``State``
``validate``   scalar fields (step, decay, lr)
``load``       :class:`Checkpoint` and :func:`load_checkpoint`
``flax_map``   flax names ↔ state-dict keys for a network (call order)
``match``      layouts, preset matching, strict layout checks
``restore``    into a network, an EMA and an optimiser
``save``       the PyTorch format and plain exports, atomically
``convert``    between formats
``inspect``    a summary without building a network
"""

from __future__ import annotations

from .convert import TARGETS, convert, exported_state_dict, infer_configs, matching_presets, \
    network_for
from .errors import (ArchitectureMismatchError, CheckpointError, CorruptCheckpointError,
                     NoSpaceError, NotACheckpointError, UnsafeCheckpointError)
from .flax_map import flax_layout, flax_names
from .inspect import inspect_checkpoint
from .load import PREFIX, Checkpoint, from_state, load_checkpoint, strip_module_prefix
from .match import (Layout, check_layout, layout_of, match_flax_presets, match_presets,
                    preset_flax_layout, preset_layout, unwrap)
from .restore import RestoreInfo, copy_ema_to, flax_to_torch, load_network, \
    optimizer_state_for_loading, restore
from .save import (SavedCheckpoint, checkpoint_state, meta_checkpoint_path, save_checkpoint,
                   save_run_checkpoint, save_state_dict, snapshot_path)
from .source import resolve_path, sha256_file
from .torch_file import FileReport, inspect_file, safe_torch_load

__all__ = [
    "CheckpointError", "NotACheckpointError", "CorruptCheckpointError", "UnsafeCheckpointError",
    "ArchitectureMismatchError", "NoSpaceError", "Checkpoint", "SavedCheckpoint", "RestoreInfo",
    "FileReport", "Layout", "load_checkpoint", "from_state", "check_layout", "restore",
    "copy_ema_to", "flax_to_torch", "load_network", "inspect_checkpoint", "checkpoint_state",
    "save_checkpoint", "save_run_checkpoint", "snapshot_path", "meta_checkpoint_path",
    "layout_of", "preset_layout", "preset_flax_layout", "match_presets", "match_flax_presets",
    "matching_presets", "sha256_file", "strip_module_prefix", "convert", "exported_state_dict",
    "save_state_dict", "infer_configs", "network_for", "flax_names", "flax_layout", "unwrap",
    "inspect_file", "safe_torch_load", "resolve_path", "optimizer_state_for_loading", "PREFIX",
    "TARGETS",
]
