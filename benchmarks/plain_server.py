"""The baseline of the load benchmark: a FedAvg server written without ptth.

What a user would write with FastAPI and NumPy: read the whole body, parse
the PTTH header with ``struct``, view each payload with ``np.frombuffer``,
widen and accumulate in NumPy. No durability, no idempotency: it does less
than ``ptth serve`` and is still the number to beat.

    uvicorn plain_server:app --port 8001   (MODEL in $PLAIN_MODEL)
"""

from __future__ import annotations

import base64
import os
import struct
import threading

import numpy as np
from fastapi import FastAPI, HTTPException, Request

_DTYPES = {0: "<f4", 1: "<f8", 2: "<i4", 3: "<f2"}


def parse(blob: bytes, byteorder: str = "<") -> dict:
    magic, version, count = struct.unpack_from(">4sII", blob, 0)
    if magic != b"PTTH" or version != 1:
        raise ValueError("not a PTTH blob")
    pos, out = 12, {}
    for _ in range(count):
        (n,) = struct.unpack_from(">I", blob, pos)
        name = blob[pos + 4 : pos + 4 + n].decode()
        pos += 4 + n
        (ndim,) = struct.unpack_from(">I", blob, pos)
        dims = struct.unpack_from(f">{ndim}I", blob, pos + 4)
        pos += 4 + 4 * ndim
        code, length = struct.unpack_from(">II", blob, pos)
        pos += 8
        dt = np.dtype(_DTYPES[code]).newbyteorder(byteorder)
        out[name] = np.frombuffer(blob, dt, length // dt.itemsize, pos).reshape(dims)
        pos += length
    return out


def _load_model(path: str) -> dict:
    with open(path, "rb") as f:
        return {k: v.copy() for k, v in parse(f.read()).items()}


template = _load_model(os.environ["PLAIN_MODEL"])
acc = {k: np.zeros(v.shape, np.float64) for k, v in template.items()}
total = {"weight": 0.0, "count": 0}
lock = threading.Lock()
app = FastAPI()


def _fold(tensors: dict, weight: float) -> None:
    with lock:
        for k, v in tensors.items():
            acc[k] += weight * v.astype(np.float64)
        total["weight"] += weight
        total["count"] += 1


@app.post("/v1/updates")
async def updates(request: Request):
    if request.headers.get("content-type", "").startswith("application/json"):
        body = await request.json()
        blob = base64.b64decode(body["weights_data"])
        weight = float(body["sample_count"])
    else:
        blob = await request.body()
        weight = float(request.headers["x-ptth-weight"])
    try:
        tensors = parse(blob, request.headers.get("x-ptth-byteorder", "<"))
    except (ValueError, struct.error, KeyError) as exc:
        raise HTTPException(400, str(exc)) from None
    _fold(tensors, weight)  # on the event loop, as the straightforward version does
    return {"accepted": True, "count": total["count"]}


@app.get("/v1/status")
async def status():
    return {"accepted": total["count"], "total_weight": total["weight"]}
