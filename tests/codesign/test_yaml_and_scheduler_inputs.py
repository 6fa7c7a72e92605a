"""One-line errors for YAML a user mistyped, YAML 1.2 exponent floats in configs and chip files, and a scheduler
address where something other than dask answers."""
import socket
import threading

import pytest

from codesign.config.run import ConfigError, safe_yaml
from hwmodels.yaml_strict import strict_load


def test_a_yaml_syntax_error_names_its_line_and_column():
    with pytest.raises(ConfigError) as err:
        safe_yaml("seed: 0\ntrain:\n  epochs: 1\n  lr: [0.1\n  batch_size: 4\n", "fl.yaml")
    msg = str(err.value)
    assert msg == ("config: 'fl.yaml' is not valid YAML: while parsing a flow sequence (line 4, column 7); expected "
                   "',' or ']', but got ':' (line 5, column 13)")


def test_exponent_floats_without_a_point_are_numbers_as_in_yaml_1_2():
    tree = strict_load("a: 5e-11\nb: 1E9\nc: 12\nd: 1.5\ne: '5e-11'\nf: .5e3\ng: 1e\nh: -2e+3\n")
    assert tree == {"a": 5e-11, "b": 1e9, "c": 12, "d": 1.5, "e": "5e-11", "f": 500.0, "g": "1e", "h": -2000.0}
    assert isinstance(tree["c"], int) and isinstance(tree["b"], float)


def test_a_chip_file_may_write_an_energy_as_5e_11(tmp_path):
    from hwmodels import load_preset
    from hwmodels.chip.derive import write_derived
    path = tmp_path / "mine.yaml"
    write_derived(path, "loihi", {}, "2026-12-08")
    text = path.read_text()
    assert "neuron_access_energy_j:" in text
    lines = text.splitlines()
    at = next(i for i, ln in enumerate(lines) if ln.strip().startswith("neuron_access_energy_j:"))
    indent = lines[at][: len(lines[at]) - len(lines[at].lstrip())]
    end = at + 1
    while end < len(lines) and lines[end].startswith(indent + " "):  # the {value, source} leaf under it
        end += 1
    lines[at:end] = [f"{indent}neuron_access_energy_j: {{value: 5e-11, source: davies2018}}"]
    path.write_text("\n".join(lines) + "\n")
    assert load_preset(str(path)).core.neuron_access_energy_j == 5e-11  # was: '5e-11' is not a number


def _not_dask(sock: socket.socket) -> None:
    """Answer every connection with an SSH banner (what a wrong port might give)."""
    while True:
        try:
            conn, _ = sock.accept()
        except OSError:
            return
        conn.sendall(b"SSH-2.0-OpenSSH_9.6\r\n" * 8)
        conn.close()


@pytest.mark.slow
def test_a_scheduler_address_where_another_server_answers_is_one_config_error():
    from codesign.config.sweep import ExecutionConfig
    from codesign.execute.executor import check_scheduler
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(5)
    threading.Thread(target=_not_dask, args=(sock,), daemon=True).start()
    address = f"tcp://127.0.0.1:{sock.getsockname()[1]}"
    try:
        with pytest.raises(ConfigError, match=rf"execution.scheduler: no dask scheduler answers at '{address}'"):
            check_scheduler(ExecutionConfig(scheduler=address), timeout_s=3.0)  # was a MemoryError traceback
    finally:
        sock.close()
