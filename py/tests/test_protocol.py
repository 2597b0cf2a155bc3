"""The wire codec on its own: tensors of every dtype and layout, limits, malformed payloads."""

import struct

import msgpack
import numpy as np
import pytest
import torch

from fpdiff import protocol as P
from fpdiff.ops import OpError, load_all

DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.int64, torch.int32, torch.uint8, torch.bool]


def _sample(dtype, shape):
    g = torch.Generator().manual_seed(0)
    if dtype == torch.bool:
        return torch.rand(shape, generator=g) > 0.5
    if dtype.is_floating_point:
        return (torch.randn(shape, generator=g) * 100).to(dtype)
    return torch.randint(0, 200, shape, generator=g).to(dtype)


def _roundtrip(doc):
    return P.unpack(P.pack(doc))


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", [(7,), (2, 3, 4), (0, 5), ()], ids=str)
def test_tensor_roundtrip_is_bitwise(dtype, shape):
    x = _sample(dtype, shape)
    y = _roundtrip({"x": x})["x"]
    assert y.dtype == x.dtype and y.shape == x.shape
    assert torch.equal(y, x)
    assert P.encode_tensor(y).data == P.encode_tensor(x).data  # the same bits, not just equal values


@pytest.mark.parametrize(
    "make",
    [
        lambda x: x.t(),
        lambda x: x[:, ::3],
        lambda x: x[1:, 2:5],
        lambda x: x[:1].expand(6, 9),
        lambda x: x.unsqueeze(0).permute(2, 0, 1),
    ],
    ids=["transpose", "step", "slice", "expand", "permute"],
)
def test_non_contiguous_tensors_are_sent_by_value(make):
    base = torch.arange(54, dtype=torch.float64).reshape(6, 9)
    x = make(base)
    assert not x.is_contiguous()
    y = _roundtrip([x])[0]
    assert torch.equal(y, x)
    assert y.is_contiguous()


def test_numpy_arrays_and_scalars_are_accepted():
    out = _roundtrip({"a": np.arange(6, dtype=np.int32).reshape(2, 3), "s": np.float32(1.5), "t": (1, 2)})
    assert torch.equal(out["a"], torch.arange(6, dtype=torch.int32).reshape(2, 3))
    assert out["s"] == 1.5 and out["t"] == [1, 2]


def test_decoding_views_the_payload_without_copying():
    x = torch.randn(1000)
    ext = P.encode_tensor(x)
    y = P.decode_tensor(ext.data)
    header = 8 + 8 * 1
    payload_addr = np.frombuffer(ext.data, dtype=np.uint8).ctypes.data
    assert y.data_ptr() == payload_addr + header
    assert torch.equal(y, x)


def test_payload_layout_is_the_documented_one():
    ext = P.encode_tensor(torch.tensor([[1.0, 2.0]], dtype=torch.float32))
    assert ext.code == P.TENSOR_EXT
    assert ext.data[:8] == bytes([1, 2, 2, 0, 0, 0, 0, 0])
    assert struct.unpack_from("<2Q", ext.data, 8) == (1, 2)
    assert np.frombuffer(ext.data, dtype="<f4", offset=24).tolist() == [1.0, 2.0]


def test_byte_length_that_disagrees_with_the_shape_is_refused():
    ext = P.encode_tensor(torch.zeros(4))
    bad = bytearray(ext.data)
    struct.pack_into("<Q", bad, 8, 5)
    with pytest.raises(P.ProtocolError) as e:
        P.decode_tensor(bytes(bad))
    assert e.value.code == P.BAD_REQUEST
    assert "needs 20 data bytes but carries 16" in e.value.message


def test_unknown_dtype_code_and_truncated_header_are_refused():
    with pytest.raises(P.ProtocolError, match="dtype code 99"):
        P.decode_tensor(bytes([1, 99, 0, 0, 0, 0, 0, 0]))
    with pytest.raises(P.ProtocolError, match="shorter"):
        P.decode_tensor(b"\x01\x02")
    with pytest.raises(P.ProtocolError, match="too short"):
        P.decode_tensor(bytes([1, 2, 3, 0, 0, 0, 0, 0]))


def test_tensor_over_the_limit_is_too_large():
    ext = P.encode_tensor(torch.zeros(1000))
    with pytest.raises(P.ProtocolError) as e:
        P.decode_tensor(ext.data, P.Limits(max_tensor_bytes=100))
    assert e.value.code == P.TOO_LARGE


def test_unknown_extension_and_garbage_are_bad_requests():
    with pytest.raises(P.ProtocolError, match="extension type 5"):
        P.unpack(msgpack.packb(msgpack.ExtType(5, b"x")))
    with pytest.raises(P.ProtocolError) as e:
        P.unpack(b"\xc1\x00")
    assert e.value.code == P.BAD_REQUEST


def test_peek_header_reads_id_without_the_args():
    buf = P.pack({"v": 1, "id": 77, "op": "echo", "args": {"x": torch.zeros(10)}})
    assert P.peek_header(buf) == {"v": 1, "id": 77, "op": "echo"}
    assert P.peek_header(buf[:20]) == {"v": 1, "id": 77, "op": "echo"}
    assert P.peek_header(b"\xc1") == {}


def test_unsupported_values_fail_loudly():
    with pytest.raises(TypeError, match="complex"):
        P.pack({"z": object.__new__(complex)})
    with pytest.raises(P.ProtocolError, match="complex64"):
        P.encode_tensor(torch.zeros(2, dtype=torch.complex64))


def test_op_args_are_checked_against_the_schema_naming_the_field():
    sleep = load_all()["sleep"]
    args = sleep.parse({"seconds": 1})
    assert args.seconds == 1.0 and isinstance(args.seconds, float)  # msgpack sends 1.0 as 1
    assert args.tick == 0.05  # the zod default
    for raw, field, words in [
        ({"seconds": "3"}, "args.seconds", "expected a number"),
        ({}, "args.seconds", "required"),
        ({"seconds": 1, "typo": 2}, "args.typo", "unknown key"),
        ({"seconds": True}, "args.seconds", "got True"),
        ({"seconds": -1}, "args.seconds", "minimum"),
    ]:
        with pytest.raises(OpError) as e:
            sleep.parse(raw)
        assert e.value.field == field and words in e.value.message, (raw, e.value.field, e.value.message)
