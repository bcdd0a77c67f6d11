"""safetensors files (Hugging Face's format), float32 only, without the safetensors package."""
import json
import struct

import numpy as np


def save(path, tensors, metadata=None):
    """tensors: {name: float32 numpy array}, written in the given order; metadata: {str: str}."""
    header, offset = {}, 0
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    arrays = []
    for name, a in tensors.items():
        a = np.ascontiguousarray(a, dtype="<f4")
        header[name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [offset, offset + a.nbytes]}
        offset += a.nbytes
        arrays.append(a)
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)  # the data starts 8-byte aligned
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for a in arrays:
            f.write(a.tobytes())


def load(path):
    """({name: float32 array}, metadata) of a safetensors file; anything malformed raises ValueError."""
    data = open(path, "rb").read()
    if len(data) < 8:
        raise ValueError(f"{path}: too short")
    (n,) = struct.unpack("<Q", data[:8])
    if n > len(data) - 8:
        raise ValueError(f"{path}: the header length points past the end")
    header = json.loads(data[8:8 + n])
    metadata = header.pop("__metadata__", {}) or {}
    body = data[8 + n:]
    dtypes = {"F32": "<f4", "F64": "<f8", "F16": "<f2"}
    tensors = {}
    for name, e in header.items():
        begin, end = e["data_offsets"]
        if e["dtype"] not in dtypes or end > len(body):
            raise ValueError(f"{path}: {name} is not a float tensor inside the file")
        a = np.frombuffer(body[begin:end], dtypes[e["dtype"]]).astype(np.float32)
        tensors[name] = a.reshape(e["shape"])
    return tensors, metadata
