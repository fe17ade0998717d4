"""Run one decoding scenario in a fresh process and print its memory growth as JSON.

Used by test_memory.py: tracemalloc does not see the native core's aligned_alloc,
so growth is read from /proc/self/status (VmHWM reset through clear_refs).

usage: memprobe.py BACKEND SCENARIO FILE [MAX_SIZE]
"""

import json
import sys

from ptth._engine import front_for


def status(field: str) -> int:
    """A /proc/self/status value in bytes."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(field)


def reset_hwm() -> None:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def main() -> None:
    backend, scenario, path = sys.argv[1:4]
    max_size = int(sys.argv[4]) if len(sys.argv) > 4 else None
    mod = front_for(backend)
    with open(path, "rb") as f:
        small = f.read() if scenario != "iter_load" else b""
    mod.loads(mod.dumps({"w": [1.0]}, compress=6))  # warm up lazy imports and tables
    result = {"reason": None, "records": 0, "checksum": 0.0}
    reset_hwm()
    rss0, size0, peak0 = status("VmRSS"), status("VmSize"), status("VmPeak")
    keep = None
    try:
        if scenario == "iter_load":
            for _name, arr in mod.iter_load(path, max_size=max_size):
                result["records"] += 1
                result["checksum"] += float(arr.flat[0]) + float(arr.flat[-1])
                del arr
        elif scenario == "loads":
            mod.loads(small, max_size=max_size)
        elif scenario == "feed":
            keep = mod.Decoder(max_size=max_size)  # stays alive while measured
            keep.feed(small)
        else:
            raise SystemExit(f"unknown scenario {scenario}")
    except Exception as exc:
        result["reason"] = getattr(exc, "reason", type(exc).__name__)
    result["hwm_growth"] = status("VmHWM") - rss0
    result["size_growth"] = status("VmSize") - size0
    result["peak_growth"] = status("VmPeak") - peak0
    del keep
    print(json.dumps(result))


if __name__ == "__main__":
    main()
