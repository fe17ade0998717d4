"""A PyTorch state_dict in and out of ptth (docs/interop.md, "PyTorch").

The NumPy tests run everywhere; the torch tests run where torch is importable
(ptth does not depend on it).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import ptth
import ptth.convert as pc

STATE = {  # what a Conv + BatchNorm state_dict holds, as NumPy arrays
    "conv.weight": np.random.default_rng(0).standard_normal((4, 3, 3, 3)).astype(np.float32),
    "bn.weight": np.ones(4, np.float32),
    "bn.bias": np.zeros(4, np.float32),
    "bn.running_mean": np.zeros(4, np.float32),
    "bn.running_var": np.ones(4, np.float32),
    "bn.num_batches_tracked": np.array(12, np.int64),
}


def test_state_dict_names_and_values_survive_every_format(tmp_path):
    for fmt in pc.FORMATS:
        path = tmp_path / f"sd.{fmt}"
        rep = pc.save_model(STATE, path)
        got = pc.load_model(path)
        assert list(got) == list(STATE)
        for k, v in STATE.items():
            assert np.array_equal(got[k], v)
        if fmt == "ptth":
            assert rep.narrowed == ["bn.num_batches_tracked"]
            assert got["bn.num_batches_tracked"].dtype == np.int32
        else:
            assert got["bn.num_batches_tracked"].dtype == np.int32  # load_model: PTTH dtypes
            tensors, _, _ = pc.read_tensors(path)
            assert tensors["bn.num_batches_tracked"].dtype == "int64"  # the file keeps int64


def test_loaded_views_are_read_only_and_share_the_file(tmp_path):
    path = tmp_path / "sd.safetensors"
    pc.save_model(STATE, path)
    got = pc.load_model(path)
    w = got["conv.weight"]
    assert not w.flags.writeable and not w.flags.owndata
    with pytest.raises(ValueError):
        w[0, 0, 0, 0] = 1.0
    owned = w.copy()  # what to do before changing values in place
    owned[0, 0, 0, 0] = 1.0
    assert owned.flags.writeable


def _torch():
    return pytest.importorskip("torch")


class _Net:
    @staticmethod
    def make(torch):
        net = torch.nn.Sequential()
        net.add_module("conv", torch.nn.Conv2d(3, 4, 3))
        net.add_module("bn", torch.nn.BatchNorm2d(4))
        net.train()
        net(torch.randn(2, 3, 8, 8))  # num_batches_tracked becomes 1, running stats move
        return net


def test_torch_state_dict_out_and_in(tmp_path):
    torch = _torch()
    from safetensors.torch import load_file

    net = _Net.make(torch)
    state = net.state_dict()
    assert state["bn.num_batches_tracked"].dtype == torch.int64
    arrays = {k: v.detach().cpu().numpy() for k, v in state.items()}  # shares memory, no copy
    path = tmp_path / "net.safetensors"
    pc.save_model(arrays, path)
    ref = load_file(str(path))
    assert set(ref) == set(state)
    for k, v in state.items():
        assert ref[k].dtype == v.dtype and torch.equal(ref[k], v), k

    loaded = pc.load_model(path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tensors = {k: torch.from_numpy(v) for k, v in loaded.items()}
    assert any("not writable" in str(w.message) for w in caught)  # read-only views: a warning
    w = loaded["conv.weight"]
    assert tensors["conv.weight"].data_ptr() == w.ctypes.data  # the file's memory, shared
    fresh = _Net.make(torch)
    fresh.load_state_dict(tensors)  # copies into the module's own int64/float32 storage
    for k, v in fresh.state_dict().items():
        assert v.dtype == state[k].dtype and torch.equal(v, state[k]), k


def test_torch_bfloat16_goes_out_widened_exactly(tmp_path):
    torch = _torch()
    t = torch.randn(5, 7).to(torch.bfloat16)
    # NumPy has no bfloat16: widen in torch (exact) or send the bits
    arrays = {"w": t.float().numpy()}
    pc.save_model(arrays, tmp_path / "w.ptth")
    back = torch.from_numpy(ptth.load(tmp_path / "w.ptth", copy=True)["w"]).to(torch.bfloat16)
    assert torch.equal(back, t)
    # a bfloat16 safetensors file, as torch writes it, loads widened and reported
    from safetensors.torch import save_file

    save_file({"w": t}, str(tmp_path / "bf.safetensors"))
    rep = pc.ConversionReport()
    got = pc.load_model(tmp_path / "bf.safetensors", report=rep)
    assert rep.widened == ["w"] and torch.equal(torch.from_numpy(got["w"]), t.float())
