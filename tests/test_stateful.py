"""A Decoder driven by a state machine: interleaved chunks, close() at any point,
feed() and close() after close or after an error, bad arguments in between.

The native and the pure Decoder run in lockstep and must agree on every call
(records or (reason, offset, record)) and on their properties. A model checks
both against one-shot ``loads`` of the bytes fed so far: an error raised by
feed() is loads' error for that prefix; close() gives loads' result for it.
The blob is valid or damaged (mutations.py), plain or compressed.
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from blobs import bits, describe, outcome
from mutations import cases
from ptth import PTTHError
from ptth._engine import front_for

BACKENDS = native, pure = (front_for("native"), front_for("python"))
CLOSED = ("error", "closed", None, None)


def values(records):
    return [(k, a.shape, a.dtype.newbyteorder("=").str, bits(a).tobytes()) for k, a in records]


class DecoderMachine(RuleBasedStateMachine):
    # max_size >= 4: below that the backends disagree on construction (the test at the end)
    @initialize(
        case=cases(),
        byteorder=st.sampled_from(["<", ">", "auto"]),
        relabel=st.booleans(),
        max_size=st.one_of(st.none(), st.integers(4, 300)),
    )
    def start(self, case, byteorder, relabel, max_size):
        _, _, self.label, self.data = case
        self.kw = {"byteorder": byteorder, "relabel_float32": relabel, "max_size": max_size}
        self.decoders = [mod.Decoder(**self.kw) for mod in BACKENDS]
        self.pos = 0  # bytes fed so far
        self.records = []  # what feed() returned so far
        self.state = "open"  # "open", "closed" or "failed"

    # -- the model ---------------------------------------------------------------

    def check_against_loads(self, r):
        """r, the outcome of the call that ended the stream (an error or close()),
        is what loads() gives for the bytes fed so far -- except that loads ignores
        max_size for plain input where the Decoder raises too_large."""
        prefix = self.data[: self.pos]
        if r[:2] == ("error", "too_large") and pure.detect_wrapper(prefix) == "none":
            return
        want = outcome(native.loads, prefix, **self.kw)
        if r[0] == "error":
            assert r == want, (self.label, self.pos)
        else:
            assert want[0] == "ok", (self.label, self.pos, want)
            assert values(self.records) == values(want[1].items()), self.label

    def both(self, method, *args):
        results = [outcome(getattr(dec, method), *args) for dec in self.decoders]
        assert describe(results[0]) == describe(results[1]), (self.label, method)
        return results[0]

    # -- rules -------------------------------------------------------------------

    @rule(n=st.one_of(st.integers(0, 5), st.integers(0, 200)))
    def feed(self, n):
        chunk = self.data[self.pos : self.pos + n]
        r = self.both("feed", chunk)
        if self.state != "open":
            assert r == CLOSED, self.label
            return
        self.pos += len(chunk)
        if r[0] == "ok":
            self.records += r[1]
            return
        self.state = "failed"
        self.check_against_loads(r)

    @precondition(lambda self: self.pos < len(self.data))
    @rule()
    def feed_rest(self):
        self.feed(len(self.data) - self.pos)

    @rule()
    def close(self):
        r = self.both("close")
        if self.state == "closed":
            assert r == ("ok", None), self.label  # closing twice is harmless
            return
        if self.state == "failed":
            assert r == CLOSED, self.label
            return
        self.state = "closed" if r[0] == "ok" else "failed"
        self.check_against_loads(r)

    @rule(bad=st.sampled_from(["text", 3, None, [1, 2], np.zeros(4, np.uint8)[::2]]))
    def feed_bad_argument(self, bad):
        # rejected before anything else, in any state, as TypeError or ValueError; the
        # decoder carries on
        kinds = []
        for dec in self.decoders:
            try:
                dec.feed(bad)
            except (TypeError, ValueError) as exc:
                assert not isinstance(exc, PTTHError), self.label
                kinds.append(type(exc))
        assert len(kinds) == 2 and kinds[0] is kinds[1], self.label

    @invariant()
    def same_properties(self):
        if hasattr(self, "decoders"):
            for prop in ("byteorder", "wrapper"):
                a, b = (getattr(dec, prop) for dec in self.decoders)
                assert a == b, (self.label, prop, a, b)


TestDecoderMachine = DecoderMachine.TestCase


def test_tiny_max_size_same_behaviour():
    """Decoder(max_size=N) with N < 4, where not even the magic fits: both
    backends must raise too_large at the same call (construction, feed or close)."""
    for max_size in (0, 1, 2, 3):
        steps = []
        for mod in BACKENDS:
            got = []
            try:
                dec = mod.Decoder(max_size=max_size)
                got.append(("init", "ok"))
                got.append(("feed", describe(outcome(dec.feed, b"PT"))))
                got.append(("close", describe(outcome(dec.close))))
            except Exception as exc:
                got.append(("init", type(exc).__name__, getattr(exc, "reason", None)))
            steps.append(got)
        assert steps[0] == steps[1], (max_size, steps)
