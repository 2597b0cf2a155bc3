"""Experiments for Python tests, resolved by the real TypeScript DSL (defaults, cross-field rules):
the worker only ever receives resolved experiments, and Python has no resolver of its own.
Needs the TypeScript build (`npm run setup` makes it)."""

from __future__ import annotations

import json
import subprocess
from functools import lru_cache
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
_SCRIPT = """
import { experiment } from "%s";
let input = "";
for await (const chunk of process.stdin) input += chunk;
const out = JSON.parse(input).map((x) => {
  try { return { ok: true, experiment: experiment(x) }; }
  catch (e) { return { ok: false, error: String(e.message ?? e) }; }
});
process.stdout.write(JSON.stringify(out));
""" % (ROOT / "dist" / "src" / "dsl" / "index.js").as_uri()


@lru_cache(maxsize=256)
def _resolve(text: str) -> str:
    out = subprocess.run(["node", "--input-type=module", "-e", _SCRIPT], input=f"[{text}]", capture_output=True,
                         text=True, check=True, cwd=ROOT)
    (answer,) = json.loads(out.stdout)
    if not answer["ok"]:
        raise ValueError(f"the DSL refuses this experiment: {answer['error']}")
    return json.dumps(answer["experiment"])


def resolved(raw: dict[str, Any]) -> dict[str, Any]:
    """The wire form of ``raw`` as `experiment()` resolves it in TypeScript."""
    return json.loads(_resolve(json.dumps(raw, sort_keys=True)))


def experiment(raw: dict[str, Any]):
    """``raw`` resolved by the DSL and read as the worker reads it."""
    from fpdiff import config as C

    return C.experiment_from_wire(resolved(raw))
