"""Hypothesis strategies for tensor dicts with every dtype and awkward values."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

DTYPES = [np.float32, np.float64, np.int32, np.float16]

# bit patterns that matter: signed zeros, infinities, NaNs with payloads, subnormals
SPECIAL_BITS = {
    np.float16: [0x0000, 0x8000, 0x7C00, 0xFC00, 0x7E00, 0xFE01, 0x7C01, 0x0001, 0x83FF, 0x7BFF],
    np.float32: [
        0,
        0x80000000,
        0x7F800000,
        0xFF800000,
        0x7FC00000,
        0xFFC00001,
        0x7F800001,
        0x00000001,
        0x807FFFFF,
        0x7F7FFFFF,
    ],
    np.float64: [
        0,
        1 << 63,
        0x7FF0 << 48,
        0xFFF0 << 48,
        0x7FF8 << 48,
        (0xFFF8 << 48) | 1,
        (0x7FF0 << 48) | 1,
        1,
        (1 << 63) | ((1 << 52) - 1),
        0x7FEFFFFFFFFFFFFF,
    ],
    np.int32: [0, 1, 0xFFFFFFFF, 0x80000000, 0x7FFFFFFF],
}
UINT = {2: np.uint16, 4: np.uint32, 8: np.uint64}

names = st.one_of(
    st.just(""),
    st.just("🎉"),
    st.just("fc.weight"),
    # any code points except surrogates, which have no UTF-8 form
    st.text(st.characters(exclude_categories=("Cs",)), max_size=12),
    st.text(st.characters(min_codepoint=0x80, exclude_categories=("Cs",)), max_size=4),
)
shapes = st.lists(st.integers(0, 4), max_size=4).map(tuple)


@st.composite
def arrays(draw, dtype=None, shape=None):
    dtype = np.dtype(draw(st.sampled_from(DTYPES)) if dtype is None else dtype)
    shape = draw(shapes) if shape is None else shape
    n = int(np.prod(shape, dtype=np.int64))
    width = dtype.itemsize
    specials = SPECIAL_BITS[dtype.type]
    word = st.one_of(st.sampled_from(specials), st.integers(0, (1 << (8 * width)) - 1))
    raw = np.array(draw(st.lists(word, min_size=n, max_size=n)), dtype=UINT[width])
    return raw.view(dtype).reshape(shape)


tensor_dicts = st.dictionaries(names, arrays(), max_size=5)
