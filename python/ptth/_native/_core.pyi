"""Type stubs of ptth._native._core, the compiled engine (csrc/bindings/module.cpp).

CI checks them against the module with mypy.stubtest.
"""

from typing import Any, ClassVar, final

import numpy as np
from typing_extensions import Buffer

NAME: str
DEFAULT_MAX_SIZE: int

class _PybindType(type): ...

class _Enum(metaclass=_PybindType):
    @property
    def name(self) -> str: ...
    @property
    def value(self) -> int: ...
    __members__: ClassVar[dict[str, Any]]
    def __init__(self, value: int) -> None: ...
    def __eq__(self, other: object) -> bool: ...
    def __ne__(self, other: object) -> bool: ...
    def __hash__(self) -> int: ...
    def __index__(self) -> int: ...
    def __int__(self) -> int: ...
    def __getstate__(self) -> int: ...
    def __setstate__(self, state: int) -> None: ...

class ByteOrder(_Enum):
    little: ClassVar[ByteOrder]
    big: ClassVar[ByteOrder]
    auto: ClassVar[ByteOrder]

class Relabel(_Enum):
    off: ClassVar[Relabel]
    on: ClassVar[Relabel]
    auto: ClassVar[Relabel]

class Wrapper(_Enum):
    none: ClassVar[Wrapper]
    zlib: ClassVar[Wrapper]
    gzip: ClassVar[Wrapper]
    deflate: ClassVar[Wrapper]

class DType(_Enum):
    float32: ClassVar[DType]
    float64: ClassVar[DType]
    int32: ClassVar[DType]
    float16: ClassVar[DType]

class Convert(_Enum):
    none: ClassVar[Convert]
    f32_to_f16: ClassVar[Convert]
    f64_to_f16: ClassVar[Convert]
    f64_to_f32: ClassVar[Convert]

class Accum(_Enum):
    f64: ClassVar[Accum]
    f32: ClassVar[Accum]

class Kind(_Enum):
    delta: ClassVar[Kind]
    full: ClassVar[Kind]

class Output(_Enum):
    sum: ClassVar[Output]
    mean: ClassVar[Output]
    apply: ClassVar[Output]

_Record = tuple[str, np.ndarray]
_AddTuple = tuple[float, float, float, int, int, str, int, bool]

def reasons() -> list[tuple[str, str]]: ...
def build_info() -> dict[str, Any]: ...
def empty(shape: list[int] | tuple[int, ...], dtype: DType) -> np.ndarray: ...
def release_memory() -> int: ...
def detect_wrapper(data: Buffer) -> Wrapper: ...
def decode(
    data: Buffer, copy: bool, byteorder: ByteOrder, relabel: Relabel, max_size: int
) -> list[_Record]: ...
def encode(
    records: list[tuple[str, np.ndarray, DType, Convert]],
    level: int,
    wrapper: Wrapper,
    saturate: bool,
    threads: int = 1,
) -> bytes: ...
def compress(data: Buffer, level: int, wrapper: Wrapper, threads: int = 1) -> bytes: ...
def decompress(data: Buffer, wrapper: Wrapper | None, max_size: int) -> bytes: ...
def f32_to_f16(x: np.ndarray, out: np.ndarray) -> None: ...
def f64_to_f16(x: np.ndarray, out: np.ndarray) -> None: ...
def f16_to_f32(x: np.ndarray, out: np.ndarray) -> None: ...
def sub_f32(updated: np.ndarray, base: np.ndarray, out: np.ndarray) -> None: ...
def sub_f64(updated: np.ndarray, base: np.ndarray, out: np.ndarray) -> None: ...
def sub_f32_to_f16(updated: np.ndarray, base: np.ndarray, out: np.ndarray) -> None: ...
def sub_f64_to_f16(updated: np.ndarray, base: np.ndarray, out: np.ndarray) -> None: ...
def axpy_f32(base: np.ndarray, scale: float, delta: np.ndarray, out: np.ndarray) -> None: ...
def axpy_f32_f16(base: np.ndarray, scale: float, delta: np.ndarray, out: np.ndarray) -> None: ...
def axpy_f64(base: np.ndarray, scale: float, delta: np.ndarray, out: np.ndarray) -> None: ...

@final
class Decoder(metaclass=_PybindType):
    def __init__(
        self, byteorder: ByteOrder, relabel: Relabel, max_size: int, size_hint: int = 0
    ) -> None: ...
    def feed(self, chunk: Buffer) -> list[_Record]: ...
    def close(self) -> None: ...
    @property
    def byteorder(self) -> ByteOrder | None: ...
    @property
    def wrapper(self) -> Wrapper | None: ...
    @property
    def state(self) -> str: ...

@final
class AddOptions(metaclass=_PybindType):
    def __init__(
        self,
        *,
        kind: Kind,
        byteorder: ByteOrder,
        relabel: Relabel,
        max_size: int,
        allow_nonfinite: bool,
        allow_cast: bool,
        count_empty: bool,
        clip_norm: float,
        max_norm: float,
        max_abs: float,
    ) -> None: ...

@final
class Hold(metaclass=_PybindType):
    def __init__(self, *args: object, **kwargs: object) -> None: ...  # made by hold() only
    def release(self) -> None: ...
    def accumulators(self) -> list[np.ndarray]: ...
    def weight_sums(self) -> list[float]: ...
    def totals(self) -> tuple[int, float, int]: ...
    def output(
        self,
        index: int,
        what: Output,
        lr: float,
        denominator: float,
        allow_nonfinite: bool,
        out: np.ndarray,
        noise: np.ndarray | None = None,
    ) -> None: ...

@final
class AggregatorCore(metaclass=_PybindType):
    def __init__(self, names: list[str], templates: list[np.ndarray], accum: Accum) -> None: ...
    def add_blob(self, data: Buffer, weight: float, options: AddOptions) -> _AddTuple: ...
    def add_arrays(self, items: list[_Record], weight: float, options: AddOptions) -> _AddTuple: ...
    def add_many(
        self, uploads: list[Any], weights: list[float], options: AddOptions
    ) -> list[Any]: ...
    def merge(self, other: AggregatorCore) -> None: ...
    def totals(self) -> tuple[int, float, int]: ...
    def hold(self) -> Hold: ...
    def restore(
        self,
        accumulators: list[np.ndarray],
        weight_sums: list[float],
        count: int,
        total_weight: float,
        empty: int,
        merge: bool,
    ) -> None: ...
    @property
    def blob_cap(self) -> int: ...
