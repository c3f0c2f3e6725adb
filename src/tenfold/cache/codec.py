"""Binary array values: a small header (magic, dtype, shape) then the raw bytes.

JSON would triple the size of an embedding and lose float32 exactness; pickle
would let whoever writes the cache run code in the server. Layout (little-endian)::

    b"TFA1" | u8 len(dtype) | dtype str (e.g. "<f4") | u8 ndim | u32 * ndim shape | data
"""

from __future__ import annotations

import struct

import numpy as np
import numpy.typing as npt

__all__ = ["CodecError", "decode_array", "encode_array"]

MAGIC = b"TFA1"
ALLOWED_DTYPES = frozenset({"<f4", "<f2", "<f8", "<i8", "<i4", "|u1"})


class CodecError(ValueError):
    """A stored value that is not a well-formed array (treat it as a miss)."""


def encode_array(array: npt.ArrayLike, dtype: str = "<f4") -> bytes:
    """``array`` as ``dtype`` (default little-endian float32) with its header."""
    if dtype not in ALLOWED_DTYPES:
        raise ValueError(f"dtype {dtype!r} not one of {sorted(ALLOWED_DTYPES)}")
    arr = np.asarray(array, dtype=np.dtype(dtype), order="C")
    if arr.ndim > 255:
        raise ValueError("too many dimensions")
    code = dtype.encode()
    header = MAGIC + struct.pack("<B", len(code)) + code + struct.pack("<B", arr.ndim)
    header += struct.pack(f"<{arr.ndim}I", *arr.shape)
    return header + arr.tobytes()


def decode_array(data: bytes) -> npt.NDArray[np.generic]:
    """The array stored by :func:`encode_array` (a read-only view over ``data``)."""
    if data[:4] != MAGIC or len(data) < 6:
        raise CodecError("not an encoded array")
    code_len = data[4]
    pos = 5 + code_len
    code = data[5:pos].decode("ascii", errors="replace")
    if code not in ALLOWED_DTYPES or len(data) < pos + 1:
        raise CodecError(f"bad dtype {code!r}")
    ndim = data[pos]
    pos += 1
    if len(data) < pos + 4 * ndim:
        raise CodecError("truncated shape")
    shape = struct.unpack_from(f"<{ndim}I", data, pos)
    pos += 4 * ndim
    dtype = np.dtype(code)
    count = int(np.prod(shape, dtype=np.int64))
    if len(data) - pos != count * dtype.itemsize:
        raise CodecError(f"payload is {len(data) - pos} bytes, shape {shape} needs more/less")
    return np.frombuffer(data, dtype=dtype, count=count, offset=pos).reshape(shape)
