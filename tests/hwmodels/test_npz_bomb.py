"""Zip bombs given as a graph or trace `.npz`: refused from the zip directory and the `.npy` headers, before any
member is inflated (hwmodels.npzfile.check_members), with one line naming the file and the member; legitimate
highly-compressible files (np.savez_compressed, sparse spike arrays) still load."""
import io
import struct
import tracemalloc
import zipfile
import zlib

import numpy as np
import pytest
from typer.testing import CliRunner

from codesign.cli.main import app
from hwmodels import npzfile
from hwmodels.trace import EventTrace, NetworkGraph

#: what the probe's bomb declared: w0.npy inflating to 2.5 GiB
BOMB_BYTES = 5 << 29
ZEROS = bytes(1 << 24)


def _npy_header(dtype, shape) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)),
                                               "fortran_order": False, "shape": shape})
    return buf.getvalue()


def _zip_member(name: str, header: bytes, n_zeros: int, level: int = 6) -> bytes:
    """A zip archive of one deflated member `name` = header + n_zeros zero bytes (n_zeros a multiple of 16 MiB)
    at zlib `level`, built without deflating it all: a full flush resets deflate, so every 16 MiB of zeros
    deflates to the same bytes."""
    c = zlib.compressobj(level, zlib.DEFLATED, -15)
    head = c.compress(header) + c.flush(zlib.Z_FULL_FLUSH)
    block = c.compress(ZEROS) + c.flush(zlib.Z_FULL_FLUSH)
    data = head + block * (n_zeros // len(ZEROS)) + c.flush(zlib.Z_FINISH)
    crc = zlib.crc32(header)
    for _ in range(n_zeros // len(ZEROS)):
        crc = zlib.crc32(ZEROS, crc)
    size, raw = len(header) + n_zeros, name.encode()
    local = struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 8, 0, 0x21, crc, len(data), size, len(raw), 0) + raw
    central = struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, 8, 0, 0x21, crc, len(data), size, len(raw),
                          0, 0, 0, 0, 0, 0) + raw
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 1, 1, len(central), len(local) + len(data), 0)
    return local + data + central + end


def _bomb(path, good_graph, member="w0.npy", header=None, n_zeros=BOMB_BYTES, level=6):
    """The graph `good_graph` with member `member` replaced by a deflate bomb of n_zeros zero bytes (its header:
    a float32 array of that size unless `header` is given), deflated at zlib `level`."""
    header = _npy_header(np.float32, (n_zeros // 4,)) if header is None else header
    path.write_bytes(_zip_member(member, header, n_zeros, level))
    with np.load(good_graph) as z, zipfile.ZipFile(path, "a", zipfile.ZIP_DEFLATED) as zf:
        for key in z.files:
            if f"{key}.npy" != member:
                buf = io.BytesIO()
                np.lib.format.write_array(buf, z[key])
                zf.writestr(f"{key}.npy", buf.getvalue())
    return path


@pytest.fixture
def saved(tmp_path, nets, rng):
    g = nets.mixed_graph(rng)
    g.save(tmp_path / "graph.npz")
    tr = nets.random_trace(g, rng, 2, 3, 0.3)
    tr.save(tmp_path / "trace.npz")
    return tmp_path


def _refused_lightly(load, path, *needles) -> str:
    """The one-line ValueError of load(path), checking that no more than 32 MiB were allocated on the way."""
    tracemalloc.start()
    try:
        with pytest.raises(ValueError) as err:
            load(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    text = str(err.value)
    assert "\n" not in text and all(n in text for n in needles), text
    assert peak < 32 << 20, f"{peak / 2**20:.0f} MiB allocated while refusing {path}"
    return text


# level 1: the probe's bomb (zipfile's compresslevel=1), 229x: a ratio bound alone would let it through
@pytest.mark.parametrize("level, ratio", [(6, 1028), (1, 229)])
def test_a_graph_whose_member_inflates_to_gigabytes_is_refused_before_inflating(saved, level, ratio):
    bomb = _bomb(saved / "bomb.npz", saved / "graph.npz", level=level)
    assert bomb.stat().st_size < 12 << 20  # 2.5 GiB in a few MiB
    with zipfile.ZipFile(bomb) as zf:
        assert zf.getinfo("w0.npy").file_size > BOMB_BYTES
    text = _refused_lightly(NetworkGraph.load, bomb, "bomb.npz: member 'w0.npy' inflates to 2.5 GiB", f"({ratio}x)",
                            "zip bomb")
    assert "over 512 MiB, at most 100x is accepted" in text and "np.savez" in text


def test_a_header_declaring_a_huge_array_in_a_small_member_is_refused(saved):
    # a member of 16 MiB whose .npy header declares 2**40 float64 (8 TiB): numpy would allocate that before reading
    bomb = _bomb(saved / "liar.npz", saved / "graph.npz", header=_npy_header(np.float64, (1 << 40,)),
                 n_zeros=1 << 24)
    _refused_lightly(NetworkGraph.load, bomb, "liar.npz: member 'w0.npy' declares a float64 array of shape",
                     "8 TiB", "but holds 16 MiB")


def test_many_members_that_inflate_a_little_each_are_refused_together(saved, monkeypatch):
    # each member is under FREE_INFLATE_BYTES (accepted alone); together they are over it (made 32 MiB here, so
    # that four members of 16 MiB show it) at over 100x
    monkeypatch.setattr(npzfile, "FREE_INFLATE_BYTES", 32 << 20)
    path = saved / "many.npz"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for i in range(4):
            zf.writestr(f"w{i}.npy", _npy_header(np.uint8, (1 << 24,)) + ZEROS)
    _refused_lightly(NetworkGraph.load, path, "many.npz: its 4 members inflate to 64 MiB", "zip bomb",
                     "the largest, member 'w0.npy'")


def test_an_encrypted_member_is_one_line(saved):
    raw = bytearray((saved / "graph.npz").read_bytes())
    for i in range(len(raw) - 4):  # set the "encrypted" flag of every header (local and central)
        if raw[i:i + 4] in (b"PK\x03\x04", b"PK\x01\x02"):
            at = i + (6 if raw[i + 2] == 3 else 8)
            raw[at] |= 1
    (saved / "locked.npz").write_bytes(bytes(raw))
    with pytest.raises(ValueError, match=r"locked.npz: member '.*' cannot be read \(RuntimeError: File .* is "
                                         "encrypted"):
        NetworkGraph.load(saved / "locked.npz")


def test_codesign_simulate_refuses_the_bomb_in_one_line_and_exit_2(saved):
    bomb = _bomb(saved / "bomb.npz", saved / "graph.npz")
    done = CliRunner().invoke(app, ["simulate", str(bomb), str(saved / "trace.npz"), "--model", "analytic"])
    assert done.exit_code == 2, done.output
    lines = done.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "bomb.npz: member 'w0.npy'" in lines[0], lines


def test_compressed_graphs_and_traces_load_like_uncompressed_ones(saved):
    for kind, load in (("graph", NetworkGraph.load), ("trace", EventTrace.load)):
        with np.load(saved / f"{kind}.npz") as z:
            np.savez_compressed(saved / f"{kind}.c.npz", **{k: z[k] for k in z.files})
    graph, trace = NetworkGraph.load(saved / "graph.c.npz"), EventTrace.load(saved / "trace.c.npz")
    assert graph.fingerprint() == NetworkGraph.load(saved / "graph.npz").fingerprint()
    assert np.array_equal(trace.indices, EventTrace.load(saved / "trace.npz").indices)


def _spikes(rng, n_bytes: int, density: float) -> np.ndarray:
    """n_bytes of packed spike bits, each bit set with probability `density` (positions at random)."""
    bits = np.zeros(n_bytes, np.uint8)
    at = rng.integers(0, n_bytes, int(n_bytes * 8 * density))
    bits[at] |= (1 << rng.integers(0, 8, at.size)).astype(np.uint8)
    return bits


def _ratio(path, member) -> float:
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo(member)
        return info.file_size / info.compress_size


def test_a_large_very_sparse_spike_array_saved_compressed_still_loads(tmp_path, rng):
    # 80 MiB of packed spike bits at a density of 1e-5 (~790x) and 80 MiB of zeros (~1027x): under 512 MiB
    for name, bits in (("sparse", _spikes(rng, 80 << 20, 1e-5)), ("silent", np.zeros(80 << 20, np.uint8))):
        np.savez_compressed(tmp_path / f"{name}.npz", activity0=bits.reshape(-1, 1 << 10))
        assert _ratio(tmp_path / f"{name}.npz", "activity0.npy") > 700
        with npzfile.open_npz(tmp_path / f"{name}.npz", "event trace") as z:
            assert np.array_equal(z["activity0"].ravel(), bits)


def test_over_the_free_allowance_only_files_that_inflate_over_100x_are_refused(tmp_path, rng, monkeypatch):
    monkeypatch.setattr(npzfile, "FREE_INFLATE_BYTES", 8 << 20)  # 32 MiB arrays stand for arrays over 512 MiB
    dense, sparse = _spikes(rng, 32 << 20, 1e-2), _spikes(rng, 32 << 20, 1e-4)
    np.savez_compressed(tmp_path / "dense.npz", activity0=dense)
    np.savez_compressed(tmp_path / "sparse.npz", activity0=sparse)
    assert _ratio(tmp_path / "dense.npz", "activity0.npy") < 20 < 200 < _ratio(tmp_path / "sparse.npz", "activity0.npy")
    with npzfile.open_npz(tmp_path / "dense.npz", "event trace") as z:
        assert np.array_equal(z["activity0"], dense)
    with pytest.raises(ValueError, match=r"sparse.npz: member 'activity0.npy' inflates to 32 MiB from .* \(\d+x\); "
                                         "refused as a possible zip bomb"):
        with npzfile.open_npz(tmp_path / "sparse.npz", "event trace"):
            pass
