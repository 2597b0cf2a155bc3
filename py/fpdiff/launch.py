"""Start a command on several processes with PyTorch's elastic launcher (what ``torchrun`` runs).

    python -m fpdiff.launch --nproc 8 [--nnodes 2 --node-rank 0 --rdzv HOST:PORT] -- -m fpdiff.worker

This is ``torch.distributed.run`` with the choices fpdiff needs made once: static rendezvous, so
global rank = node_rank · nproc + local rank and rank 0 is local rank 0 of node 0 (the process that
serves the control socket); no restarts (a failed rank fails the run, it is not silently
replaced); the agent polls its processes every ``--monitor-interval`` seconds (0.5) and stops the
whole group when one fails; single-node jobs rendezvous on a free loopback port, so several jobs
share a machine. Standard streams are not redirected: rank 0's ready line reaches our stdout.
The launcher exits with the command's status, or 1 when a rank failed; it dies with its parent.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
from typing import Optional


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def torchrun_args(nproc: int, nnodes: int = 1, node_rank: int = 0, rdzv: Optional[str] = None,
                  monitor_interval: float = 0.5) -> list[str]:
    """The ``torch.distributed.run`` options for a job (before the command)."""
    if nnodes > 1 and not rdzv:
        raise ValueError("--rdzv HOST:PORT is required with --nnodes > 1 (node 0's address, reachable by every node)")
    if rdzv:
        host, _, port = rdzv.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"--rdzv must be HOST:PORT, got {rdzv!r}")
    else:
        host, port = "127.0.0.1", str(free_port())
    if not 0 <= node_rank < nnodes:
        raise ValueError(f"--node-rank {node_rank} must lie in [0, {nnodes})")
    return ["--nnodes", str(nnodes), "--nproc_per_node", str(nproc), "--node_rank", str(node_rank),
            "--rdzv_backend", "static", "--master_addr", host, "--master_port", port,
            "--max_restarts", "0", "--monitor_interval", str(monitor_interval)]


def main(argv: Optional[list[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--" not in argv:
        print("usage: python -m fpdiff.launch --nproc N [--nnodes M --node-rank R --rdzv HOST:PORT] -- <python args>",
              file=sys.stderr)
        return 2
    cut = argv.index("--")
    ours, command = argv[:cut], argv[cut + 1:]
    p = argparse.ArgumentParser(prog="python -m fpdiff.launch")
    p.add_argument("--nproc", type=int, required=True)
    p.add_argument("--nnodes", type=int, default=1)
    p.add_argument("--node-rank", type=int, default=0)
    p.add_argument("--rdzv", default=None)
    p.add_argument("--monitor-interval", type=float, default=0.5)
    ns = p.parse_args(ours)
    if ns.nproc < 1 or ns.nnodes < 1:
        p.error("--nproc and --nnodes must be at least 1")
    if not command:
        p.error("nothing to run after --")

    from . import compat
    from .distributed import die_with_parent

    die_with_parent()
    from torch.distributed import run as tr
    from torch.distributed.launcher.api import elastic_launch

    try:
        opts = torchrun_args(ns.nproc, ns.nnodes, ns.node_rank, ns.rdzv, ns.monitor_interval)
    except ValueError as exc:
        p.error(str(exc))
    # "--no_python" + the interpreter: the command is python's own argument list (-m module …)
    args = tr.parse_args([*opts, "--no_python", sys.executable, *command])
    if ns.nproc > 1 and "OMP_NUM_THREADS" not in os.environ:
        # each rank gets its share of the cores (torchrun would pin them all to one thread)
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        os.environ["OMP_NUM_THREADS"] = str(max(1, cores // ns.nproc))
    config, cmd, cmd_args = tr.config_from_args(args)
    compat.fix_launch_streams(config)
    try:
        elastic_launch(config=config, entrypoint=cmd)(*cmd_args)
    except Exception as exc:  # ChildFailedError: the agent already stopped the other ranks
        print(f"fpdiff.launch: the job failed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
