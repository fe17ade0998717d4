"""Coverage-guided fuzz target (atheris) for ptth serve's request parsing.

Feeds arbitrary bytes to the pure functions of ``ptth.server.parsing``: the
iOS JSON body (``parse_json_update``, also through a reused buffer longer than
the body) and every header parser. The only exception allowed out is
``BadRequest``; a successful JSON parse must agree with ``json`` + ``base64``.

    python fuzz/fuzz_server_parsing.py -max_total_time=30 CORPUS_DIR
    python fuzz/fuzz_server_parsing.py --make-seeds CORPUS_DIR
"""

from __future__ import annotations

import base64
import json
import sys
from pathlib import Path

import atheris

from ptth.server import parsing
from ptth.server.parsing import BadRequest

# Instrument the parsing functions' bytecode in place: import hooks miss
# modules that an editable install loads through its own finder.
for _obj in vars(parsing).values():
    if getattr(_obj, "__module__", None) == parsing.__name__ and hasattr(_obj, "__code__"):
        atheris.instrument_func(_obj)

SEEDS = [
    b'{"weights_data": "UFRUSAAAAAEAAAAA", "sample_count": 3, "update_format": "delta"}',
    (
        b'{"device": "iPhone", "weights_data": "UFRU\\/A==", "sample_count": 2.5, '
        b'"update_format": "weights", "round": 4, "m": [1, {"weights_data": "x"}, "\\"}"]}'
    ),
    b'{"weights_data": "", "sample_count": 1, "update_format": "state_dict", "x": null}',
    (
        b'{"a": {"b": [true, false, 1e9, "q\\\\"]}, "weights_data": "QUJD", "sample_count": 7,'
        b' "update_format": "delta"}'
    ),
]
HEADERS = [
    parsing.parse_weight,
    parsing.parse_kind,
    parsing.parse_round,
    parsing.parse_idempotency_key,
    parsing.parse_bearer,
    lambda v: parsing.parse_byteorder(v, default="<"),
    lambda v: parsing.parse_content_length(v, limit=1 << 20),
]


def check_json(body: bytes, length: int | None) -> None:
    buf = bytearray(body)
    if length is not None:
        buf += b"\x00garbage-after-the-body"  # a pooled buffer is longer than the request
    try:
        u = parsing.parse_json_update(buf, length=len(body) if length is not None else None)
    except BadRequest:
        return
    ref = json.loads(body)
    assert isinstance(ref, dict)
    assert u.blob == base64.b64decode(ref["weights_data"].encode("ascii"), validate=True)
    assert u.weight == float(ref["sample_count"]) > 0
    assert u.kind == parsing.KINDS[ref["update_format"]]


def TestOneInput(data: bytes) -> None:
    if not data:
        return
    selector, rest = data[0], data[1:]
    if selector < 200:
        check_json(rest, None if selector % 2 else len(rest))
    else:
        text = rest.decode("utf-8", "replace")
        for parse in HEADERS:
            try:
                parse(text)
            except BadRequest:
                pass


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--make-seeds":
        out = Path(sys.argv[2])
        out.mkdir(parents=True, exist_ok=True)
        for i, seed in enumerate(SEEDS):
            (out / f"json-{i}").write_bytes(b"\x00" + seed)
            (out / f"json-buffer-{i}").write_bytes(b"\x01" + seed)
        for i, h in enumerate([b"120", b"Bearer abc", b"delta", b"big", b"client-7/r3"]):
            (out / f"header-{i}").write_bytes(b"\xff" + h)
        return
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
