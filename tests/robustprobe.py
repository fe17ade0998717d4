"""Peak memory of ptth.median / ptth.trimmed_mean in a fresh process, printed as JSON.

Used by test_robust.py. The uploads (float32 deltas, every other one zlib-compressed)
are made before the high-water mark is reset, so what is measured is what the
statistic itself adds: /proc/self/status's VmHWM (reset through clear_refs) minus
VmRSS at the reset. tracemalloc would miss the native core's allocations.

usage: robustprobe.py BACKEND {median,trimmed_mean} N PARAMS ELEMENTS
"""

import ctypes
import json
import sys
import time

import numpy as np

from memprobe import status  # the /proc/self/status reader the other probes use
from ptth import _robust
from ptth._engine import front_for


def main() -> None:
    t_start = time.perf_counter()
    backend, stat, n, params, elements = sys.argv[1:6]
    n, params, elements = int(n), int(params), int(elements)
    api = front_for(backend)
    robust = _robust.over(api)
    base = np.random.default_rng(0).standard_normal(params * elements, dtype=np.float32)
    names = [f"layer{i}.weight" for i in range(params)]
    uploads = []
    for i in range(n):  # cheap to make, different per upload and per coordinate
        flat = np.roll(base, 7919 * i) * np.float32(1e-3 * (1 + i / n))
        delta = {k: flat[j * elements : (j + 1) * elements] for j, k in enumerate(names)}
        uploads.append(api.dumps(delta, compress=1) if i % 2 else api.dumps(delta))
    del delta, flat, base

    def run(ups):
        if stat == "median":
            return robust.median(ups)
        return robust.trimmed_mean(ups, 0.1)

    t0 = time.perf_counter()
    tiny = {"w": np.zeros(8, np.float32)}
    run([api.dumps(tiny), api.dumps(tiny, compress=1), tiny])  # warm up lazy imports and pools
    ctypes.CDLL(None).malloc_trim(0)  # freed heap pages must not be reused unseen
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # VmHWM := VmRSS
    rss0 = status("VmRSS")
    t1 = time.perf_counter()
    result = run(uploads)
    growth = status("VmHWM") - rss0
    t2 = time.perf_counter()

    # outside the measurement: two parameters against the NumPy/scipy reference
    checked = True
    picked = [names[0], names[-1]]
    decoded = [api.loads(u, copy=True) for u in uploads]
    for name in picked:
        stack = np.stack([d[name].astype(np.float64) for d in decoded])
        if stat == "median":
            checked &= bool(np.array_equal(result[name], np.median(stack, axis=0)))
        else:  # scipy.stats.trim_mean's algorithm
            cut = int(0.1 * n)
            part = np.partition(stack, (cut, n - cut - 1), axis=0)
            want = np.mean(part[cut : n - cut], axis=0)
            checked &= bool(np.allclose(result[name], want, rtol=1e-12, atol=1e-18))
    print(
        json.dumps(
            {
                "growth": growth,
                "n": n,
                "result_bytes": sum(v.nbytes for v in result.values()),
                "model_bytes": 4 * params * elements,
                "largest_elements": elements,
                "checked": checked,
                "seconds": t2 - t1,
                "setup_seconds": t1 - t0,
                "total_seconds": time.perf_counter() - t_start,
            }
        )
    )


if __name__ == "__main__":
    main()
