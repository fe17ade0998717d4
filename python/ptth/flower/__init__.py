"""ptth inside Flower (``pip install 'ptth[flower]'``, flwr >= 1.42).

Server: ``ptth.flower.FedAvg`` is a drop-in for ``flwr.serverapp.strategy.FedAvg``
whose ``aggregate_train`` folds every reply through one ``ptth.Aggregator``.
Client: ``ptth_mod`` (or ``make_ptth_mod(...)``) sends each train reply as a
PTTH float16 + zlib delta against the global model; ``encode_record`` does the
same by hand. How a blob travels: one ``Array`` of ``stype="ptth"`` under the
key ``"ptth.delta"`` or ``"ptth.full"`` in the reply's ``ArrayRecord``.
See docs/flower.md.

Example::

    import ptth.flower
    strategy = ptth.flower.FedAvg(fraction_train=0.5)            # ServerApp side
    app = ClientApp(mods=[ptth.flower.ptth_mod])                 # ClientApp side
"""

from __future__ import annotations

try:
    import flwr  # noqa: F401
except ImportError as exc:  # the extra is optional; say which one
    raise ImportError(
        f"ptth.flower needs Flower: python -m pip install 'ptth[flower]' (flwr>=1.42,<2): {exc}"
    ) from exc

from ._records import (
    DELTA_KEY,
    FULL_KEY,
    PTTH_STYPE,
    decode_record,
    encode_record,
    is_ptth_record,
    make_ptth_mod,
    numpy_view,
    ptth_mod,
    record_blob,
)
from ._strategy import FedAvg, Rejection, RoundReport

__all__ = [
    "DELTA_KEY",
    "FULL_KEY",
    "PTTH_STYPE",
    "FedAvg",
    "Rejection",
    "RoundReport",
    "decode_record",
    "encode_record",
    "is_ptth_record",
    "make_ptth_mod",
    "numpy_view",
    "ptth_mod",
    "record_blob",
]
