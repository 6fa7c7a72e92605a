"""Bad input to the NIR exchange: graphs to_nir cannot name or time faithfully are refused before anything is
written, a failed save keeps the old file, and malformed .nir files are one-line ValueErrors naming the file."""
import os

import h5py
import numpy as np
import pytest

import workloads.exchange.nir_io as nir_io
from hwmodels.trace import NetworkGraph, NeuronModel, Population, Projection
from workloads.exchange.nir_io import graph_from_nir, load_nir, save_nir, to_nir

LIF = NeuronModel("LIF", 1.0, tau=2.0)
INPUT = NeuronModel("input")


def _chain(hidden: str = "h", proj: str = "fc") -> NetworkGraph:
    """in (3) -fc-> hidden LIF (4) -fc2 (biased)-> o IF (2)."""
    return NetworkGraph([Population("in", (3,), INPUT), Population(hidden, (4,), LIF),
                         Population("o", (2,), NeuronModel("IF", 1.0))],
                        [Projection(proj, "in", hidden, "dense", np.ones((4, 3))),
                         Projection("fc2", hidden, "o", "dense", np.ones((2, 4)), bias=np.zeros(2))])


@pytest.mark.parametrize("name", ["enc/h", "/abs", ".", "..", "h\x00", "tab\there"])
def test_names_that_cannot_name_a_nir_node_are_refused_and_nothing_is_written(tmp_path, name):
    with pytest.raises(ValueError, match=r"population name .* cannot name a NIR node \(an HDF5 group\)"):
        save_nir(_chain(hidden=name), tmp_path / "net.nir")
    assert list(tmp_path.iterdir()) == []


def test_a_name_shared_by_a_population_and_a_projection_is_refused():
    with pytest.raises(ValueError, match="projection name 'h' is also a population's name"):
        to_nir(_chain(proj="h"))


def test_added_nodes_never_take_a_population_or_projection_name():
    # h's Output would be "h_out" and the projection's Flatten "h_out_flatten": both are taken
    g = NetworkGraph([Population("in", (1, 2, 2), INPUT), Population("h", (2,), LIF)],
                     [Projection("h_out", "in", "h", "dense", np.ones((2, 4)))])
    n = to_nir(g)
    assert sorted(n.nodes) == ["h", "h_out", "h_out_2", "h_out_flatten", "in"]
    assert sorted(n.edges) == [("h", "h_out_2"), ("h_out", "h"), ("h_out_flatten", "h_out"),
                               ("in", "h_out_flatten")]
    back = graph_from_nir(n)
    assert [p.shape for p in back.populations.values()] == [(1, 2, 2), (2,)] and len(back.projections) == 1
    np.testing.assert_array_equal(back.projections[0].weight, np.ones((2, 4)))


@pytest.mark.parametrize("dt", [float("inf"), float("nan"), 0.0, -1e-3, "1e-3"])
def test_a_dt_that_is_not_a_finite_positive_number_is_refused(dt):
    with pytest.raises(ValueError, match="dt: .* must be a finite number of seconds > 0"):
        to_nir(_chain(), dt=dt)


def test_a_dt_whose_time_constants_overflow_is_refused():
    # an IF is written as a LIF with tau = 1e30 dt: dt = 1e290 s overflows float64
    with pytest.raises(ValueError, match="dt: 1e.290 s makes tau of population 'o' overflow"):
        to_nir(_chain(), dt=1e290)


def test_a_failed_write_keeps_the_existing_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "net.nir"
    save_nir(_chain(), path)
    before = path.read_bytes()

    def half_write(target, graph):
        with open(target, "wb") as fh:
            fh.write(b"\x89HDF half")
        raise OSError("disk full")
    monkeypatch.setattr(nir_io.nir, "write", half_write)
    with pytest.raises(OSError, match="disk full"):
        save_nir(_chain(), path)
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["net.nir"]
    monkeypatch.undo()
    assert sorted(load_nir(path).nodes) == ["fc", "fc2", "h", "in", "o", "o_out"]


def _variant(tmp_path, good, tag, edit):
    p = tmp_path / f"{tag}.nir"
    p.write_bytes(good.read_bytes())
    with h5py.File(p, "r+") as h:
        edit(h)
    return p


def _put(key, value):
    def edit(h):
        if key in h:
            del h[key]
        h[key] = value
    return edit


NODES = "node/nodes/"
CASES = {
    "tau_inf": (_put(NODES + "h/tau", np.full(4, np.inf)), "cannot be imported (OverflowError"),
    "bias": (_put(NODES + "fc2/bias", np.zeros(3, np.float32)),
             "Affine node 'fc2': bias of 3 values does not fit weight (2, 4) (2 outputs)"),
    "edge": (_put("node/edges", np.array([[b"in", b"zz"], [b"in", b"fc"], [b"fc", b"h"], [b"h", b"fc2"],
                                          [b"fc2", b"o"], [b"o", b"o_out"]])), "cannot be imported (KeyError: 'zz')"),
    "missing_node": (lambda h: h.__delitem__(NODES + "h"), "cannot be imported (KeyError: 'h')"),
    "edges_3_columns": (_put("node/edges", np.array([[b"in", b"fc", b"h"], [b"fc", b"h", b"fc2"]])),
                        "not a readable NIR file (too many values to unpack"),
    "unknown_type": (_put(NODES + "h/type", "Foo"), "not a readable NIR file (AssertionError"),
    "complex": (_put(NODES + "fc/weight", np.full((4, 3), 1 + 1j, np.complex64)),
                "node 'fc' field 'weight' is complex (complex64)"),
    "bits": (_put(NODES + "fc/metadata/weight_bits", 4.5),
             "node 'fc': metadata 'weight_bits' is 4.5, expected an integer"),
    "state_bits": (_put(NODES + "h/metadata/state_bits", 2.7),  # was truncated to 2 bits
                   "node 'h': metadata 'state_bits' is 2.7, expected an integer"),
    "state_bits_text": (_put(NODES + "h/metadata/state_bits", "abc"),
                        "node 'h': metadata 'state_bits' is 'abc', expected an integer"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_malformed_nir_files_are_one_line_value_errors_naming_the_file(tmp_path, case):
    good = tmp_path / "good.nir"
    save_nir(_chain(), good)
    edit, needle = CASES[case]
    path = _variant(tmp_path, good, case, edit)
    with pytest.raises(ValueError) as err:
        graph_from_nir(path)
    text = str(err.value)
    assert needle in text and "\n" not in text and (path.name in text or "node '" in text), text


@pytest.mark.parametrize("content", [b"", b"not hdf5 at all", None])
def test_empty_truncated_or_foreign_files_are_not_readable_nir(tmp_path, content):
    good = tmp_path / "good.nir"
    save_nir(_chain(), good)
    bad = tmp_path / "bad.nir"
    bad.write_bytes(good.read_bytes()[:5000] if content is None else content)
    with pytest.raises(ValueError, match=f"{bad}: not a readable NIR file \\(OSError: "):
        load_nir(bad)


@pytest.mark.parametrize("shape", [(2 ** 31,), (2 ** 62,)])
def test_an_input_shape_of_more_neurons_than_a_trace_numbers_is_refused_before_any_allocation(shape):
    n = to_nir(_chain())
    n.nodes["in"].input_type["input"] = np.array(shape)
    with pytest.raises(ValueError, match=rf"node 'in': input shape \[{shape[0]}\] holds {shape[0]} neurons; "
                                         r"at most 2147483647"):
        graph_from_nir(n)


def test_a_population_of_more_than_2_31_minus_1_neurons_is_refused():
    assert Population("p", (2 ** 31 - 1,), LIF).size == 2 ** 31 - 1
    with pytest.raises(ValueError, match=r"population.shape: \(2147483648,\) holds 2147483648 neurons; at most"):
        Population("p", (2 ** 31,), LIF)
    with pytest.raises(ValueError, match=r"holds 1208925819614629174706176 neurons"):  # 2**80: no int64 overflow
        Population("p", (2 ** 40, 2 ** 40), LIF)


def _external_storage(secret):
    def edit(h):
        del h[NODES + "fc/weight"]
        h[NODES + "fc"].create_dataset("weight", shape=(4, 3), dtype="<f8", external=[(str(secret), 0, 96)])
    return edit


def _external_link(other):
    def edit(h):
        del h[NODES + "fc/weight"]
        h[NODES + "fc/weight"] = h5py.ExternalLink(str(other), "/w")
    return edit


def _virtual(other):
    def edit(h):
        del h[NODES + "fc/weight"]
        layout = h5py.VirtualLayout(shape=(4, 3), dtype="<f8")
        layout[:] = h5py.VirtualSource(str(other), "w", shape=(4, 3))
        h[NODES + "fc"].create_virtual_dataset("weight", layout)
    return edit


@pytest.mark.parametrize("kind", ["external storage", "external link", "virtual dataset"])
def test_a_nir_file_that_reads_another_file_is_refused(tmp_path, kind):
    # a shared .nir file must not copy bytes of another file (here a "secret") into the imported weights
    secret, other = tmp_path / "secret.bin", tmp_path / "other.h5"
    secret.write_bytes(np.arange(12, dtype="<f8").tobytes())
    with h5py.File(other, "w") as h:
        h["w"] = np.arange(12, dtype="<f8").reshape(4, 3)
    good = tmp_path / "good.nir"
    save_nir(_chain(), good)
    edit = {"external storage": _external_storage(secret), "external link": _external_link(other),
            "virtual dataset": _virtual(other)}[kind]
    path = _variant(tmp_path, good, "ext", edit)
    with pytest.raises(ValueError, match=f"{path}: not a self-contained NIR file") as err:
        load_nir(path)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("field", ["v_threshold", "tau", "r"])
def test_a_nan_neuron_parameter_is_named_as_nan(field):
    import nir

    from workloads.exchange.nir_io import from_nir
    params = {"tau": np.full(3, 2e-3), "r": np.ones(3), "v_leak": np.zeros(3), "v_threshold": np.ones(3),
              "v_reset": np.zeros(3)}
    params[field] = np.full(3, np.nan)
    g = nir.NIRGraph.from_list(nir.Input(np.array([2])), nir.Linear(np.ones((3, 2))), nir.LIF(**params),
                               nir.Output(np.array([3])))
    with pytest.raises(ValueError, match=rf"{field} holds NaN; it must be a number"):
        from_nir(g)
