"""Failed atomic writes name the user's file, not the temporary one beside it, keep the errno and leave nothing."""
import errno

import pytest

from hwmodels.atomic import write_atomic
from hwmodels.chip.chipfile import write_chip_file


def test_a_failing_write_names_the_target_and_keeps_the_errno(tmp_path):
    def full(tmp):
        raise OSError(errno.ENOSPC, "No space left on device", tmp)
    with pytest.raises(OSError) as err:
        write_atomic(tmp_path / "r.json", full)
    assert str(err.value) == f"cannot write {str(tmp_path / 'r.json')!r}: No space left on device"
    assert err.value.errno == errno.ENOSPC and list(tmp_path.iterdir()) == []


def test_a_folder_that_refuses_new_files_names_the_target(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise PermissionError(errno.EPERM, "Operation not permitted", str(tmp_path / ".r.json.x.tmp"))
    monkeypatch.setattr("tempfile.mkstemp", refuse)
    with pytest.raises(PermissionError, match=r"^cannot write '.*r\.json': Operation not permitted$"):
        write_atomic(tmp_path / "r.json", lambda tmp: None)


def test_a_write_error_of_another_kind_is_raised_as_it_is(tmp_path):
    def bad(tmp):
        raise ValueError("not JSON")
    with pytest.raises(ValueError, match="^not JSON$"):
        write_atomic(tmp_path / "r.json", bad)
    assert list(tmp_path.iterdir()) == []


def test_a_chip_file_that_cannot_be_written_is_named(tmp_path, monkeypatch):
    def refuse(path, *args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(path))
    monkeypatch.setattr("hwmodels.chip.chipfile.os.open", refuse)
    with pytest.raises(PermissionError) as err:
        write_chip_file(tmp_path / "c.yaml", "name: x\n")
    assert str(err.value) == f"cannot write {str(tmp_path / 'c.yaml')!r}: Permission denied"
    assert err.value.errno == errno.EACCES and list(tmp_path.iterdir()) == []


def test_an_error_about_another_file_is_raised_as_it_is(tmp_path):
    """An OSError about a file `write` reads (not the temporary file) keeps its own message and file name."""
    def copy_missing(tmp):
        open(tmp_path / "missing.csv", encoding="utf-8").read()
    with pytest.raises(FileNotFoundError) as err:
        write_atomic(tmp_path / "r.json", copy_missing)
    assert err.value.filename == str(tmp_path / "missing.csv") and "cannot write" not in str(err.value)
    assert list(tmp_path.iterdir()) == []
