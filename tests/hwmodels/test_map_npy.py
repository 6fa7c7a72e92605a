"""hwmodels.npzfile.map_npy against np.load(mmap_mode="r"): the same arrays (dtype, shape, order, values) for
every header version and layout, read-only and memory-mapped, and one-line refusals of malformed files."""
import numpy as np
import pytest

from hwmodels.npzfile import load_npy, map_npy
from tests.hwmodels.conftest import mapped


@pytest.mark.parametrize("array", [
    np.arange(12, dtype=np.int64),
    np.arange(24, dtype=np.float32).reshape(2, 3, 4),
    np.asfortranarray(np.arange(12, dtype=np.uint16).reshape(3, 4)),
    np.array([1.5, -2.0], dtype=">f8"),
    np.zeros((0, 5), np.int32),
    np.array(7, dtype=np.uint8),
    np.zeros(3, dtype=[("a", np.int32), ("b", np.float64)]),
])
@pytest.mark.parametrize("version", [(1, 0), (2, 0)])
def test_map_npy_equals_np_load(tmp_path, array, version):
    path = tmp_path / "a.npy"
    with open(path, "wb") as fh:
        np.lib.format.write_array(fh, array, version=version)
    want, got = np.load(path, mmap_mode="r"), map_npy(path)
    assert got.dtype == want.dtype and got.shape == want.shape
    assert got.flags.f_contiguous == want.flags.f_contiguous and got.flags.c_contiguous == want.flags.c_contiguous
    assert np.array_equal(got, want) and not got.flags.writeable
    if array.size:
        assert mapped(got)


def test_map_npy_refuses_malformed_files(tmp_path):
    path = tmp_path / "a.npy"
    np.save(path, np.arange(10, dtype=np.int64))
    data = path.read_bytes()
    path.write_bytes(data[:-8])  # one value short
    with pytest.raises(ValueError, match="declares 80 bytes of data but the file holds 72"):
        map_npy(path)
    path.write_bytes(b"not an npy file at all")
    with pytest.raises(ValueError):
        map_npy(path)
    np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="object array"):
        map_npy(path)
    with pytest.raises(ValueError, match=r"a\.npy: not a readable \.npy column of a trace folder \(an object array"):
        load_npy(path, "trace folder", "int")
    with pytest.raises(ValueError, match="missing or not a file"):
        load_npy(tmp_path / "absent.npy", "trace folder", "int")
