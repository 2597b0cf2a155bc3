#!/usr/bin/env bash
# torch 2.x: the worker-level Python tests (real worker subprocesses over ZeroMQ); pyzmq is not on
# the GPU image, so it is installed from a carried wheel (.whl/) into /tmp/site first.
set -uo pipefail
if ! python3 -c "import zmq" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl && export PYTHONPATH="/tmp/site:${PYTHONPATH:-}"
fi
python3 -m pytest py/tests/test_protocol.py py/tests/test_models_ops.py py/tests/test_ops_numerics.py py/tests/test_ops_train.py -q -p no:cacheprovider 2>&1 | tail -15
