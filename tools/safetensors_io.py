"""Minimal safetensors reader/writer (numpy only; no `safetensors` package needed).

File layout (https://github.com/huggingface/safetensors):
  8 bytes   little-endian u64 N = header length
  N bytes   UTF-8 JSON: {name: {"dtype": "F32", "shape": [...], "data_offsets": [b, e]}, ...,
                         optional "__metadata__": {str: str}}
  rest      raw little-endian tensor bytes; offsets are relative to the start of this region.

defines: read_safetensors(path) -> (dict name -> np.ndarray, metadata dict)
         write_safetensors(path, tensors, metadata=None)
Supported dtypes: F64 F32 F16 BF16 (read only, widened to F32) I64 I32 I16 I8 U8 BOOL.
"""
import json
import struct

import numpy as np

_DTYPES = {
    "F64": np.dtype("<f8"), "F32": np.dtype("<f4"), "F16": np.dtype("<f2"),
    "I64": np.dtype("<i8"), "I32": np.dtype("<i4"), "I16": np.dtype("<i2"),
    "I8": np.dtype("i1"), "U8": np.dtype("u1"), "BOOL": np.dtype("?"),
}
_NAMES = {v: k for k, v in _DTYPES.items()}


def read_safetensors(path):
    """Returns ({name: np.ndarray}, metadata). Arrays are copies in native byte order."""
    with open(path, "rb") as f:
        raw = f.read()
    if len(raw) < 8:
        raise ValueError(f"{path}: too short for a safetensors file")
    (n,) = struct.unpack("<Q", raw[:8])
    if 8 + n > len(raw):
        raise ValueError(f"{path}: header length {n} exceeds file size {len(raw)}")
    header = json.loads(raw[8:8 + n].decode("utf-8"))
    data = memoryview(raw)[8 + n:]
    meta = header.pop("__metadata__", None) or {}
    out = {}
    for name, info in header.items():
        b, e = info["data_offsets"]
        shape = tuple(int(s) for s in info["shape"])
        dt = info["dtype"]
        if e > len(data) or b > e:
            raise ValueError(f"{path}: tensor {name} offsets [{b},{e}) out of range")
        if dt == "BF16":  # widen: bf16 is the top half of an f32
            u16 = np.frombuffer(data[b:e], dtype="<u2").astype(np.uint32) << 16
            arr = u16.view(np.float32)
        elif dt in _DTYPES:
            arr = np.frombuffer(data[b:e], dtype=_DTYPES[dt])
        else:
            raise ValueError(f"{path}: tensor {name} has unsupported dtype {dt}")
        if arr.size != int(np.prod(shape, dtype=np.int64)):
            raise ValueError(f"{path}: tensor {name} has {arr.size} elements, shape {shape}")
        out[name] = arr.reshape(shape).astype(arr.dtype.newbyteorder("="), copy=True)
    return out, meta


def write_safetensors(path, tensors, metadata=None):
    """tensors: {name: array-like}. Written in sorted name order."""
    header, chunks, off = {}, [], 0
    for name in sorted(tensors):
        arr = np.array(tensors[name], order="C", copy=True)  # (ascontiguousarray makes 0-d 1-d)
        key = np.dtype(arr.dtype.kind + str(arr.dtype.itemsize)).newbyteorder("<") \
            if arr.dtype.kind != "b" else np.dtype("?")
        if key not in _NAMES:
            raise ValueError(f"tensor {name}: unsupported dtype {arr.dtype}")
        arr = arr.astype(key, copy=False)
        buf = arr.tobytes()
        header[name] = {"dtype": _NAMES[key], "shape": list(arr.shape),
                        "data_offsets": [off, off + len(buf)]}
        chunks.append(buf)
        off += len(buf)
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    hj = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hj += b" " * ((8 - len(hj) % 8) % 8)  # pad so the data region starts 8-byte aligned
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hj)))
        f.write(hj)
        for c in chunks:
            f.write(c)
