"""Checkpoints round-trip weights, config and every compressed architecture, refuse a mismatched architecture, and
never run code from a file: planted pickles, version-1 checkpoints (pickled modules) and tampered headers are
refused with a one-line ValueError."""
import json
import os
import pickle
import shlex
import zipfile

import pytest
import torch
from spikingjelly.activation_based import functional
from torch import nn

from workloads import checkpoint, module_tree
from workloads.compression import LowRankConv2d, LowRankLinear
from workloads.compression.base import find_conv_units, remove_channels
from workloads.compression.binary import swap_attention
from workloads.compression.q_snn import swap_neurons
from workloads.compression.quant import ReScaW, attach, bake
from workloads.models import build_model
from workloads.neurons import SLIFNode


def test_round_trip_and_mismatch(tmp_path):
    model = build_model("mnist_conv", (1, 8, 8), 10, seed=3)
    path = tmp_path / "m.pt"
    checkpoint.save(model, path, config={"seed": 3}, extra={"accuracy": 0.5})
    other = build_model("mnist_conv", (1, 8, 8), 10, seed=4)
    assert not torch.equal(other[0].weight, model[0].weight)
    payload = checkpoint.load_into(other, path)
    assert torch.equal(other[0].weight, model[0].weight)
    assert payload["config"] == {"seed": 3} and payload["extra"]["accuracy"] == 0.5
    assert payload["versions"]["torch"] == torch.__version__
    reloaded = checkpoint.load(path)["model"]
    assert checkpoint.signature(reloaded) == checkpoint.signature(model)
    wrong = build_model("mnist_conv", (1, 28, 28), 10, seed=3)  # FC input 32*7*7 instead of 32*2*2
    with pytest.raises(ValueError, match="architecture mismatch at '.*weight'"):
        checkpoint.load_into(wrong, path)
    plif = build_model("mnist_conv", (1, 8, 8), 10, neuron="PLIF", seed=3)
    with torch.no_grad():
        plif[2].w.add_(0.5)  # a learned tau, which PLIF's settings show
    checkpoint.save(plif, tmp_path / "plif.pt")
    checkpoint.load_into(build_model("mnist_conv", (1, 8, 8), 10, neuron="PLIF", seed=4), tmp_path / "plif.pt")
    for kwargs, where in (({"neuron": "IF"}, "'2': IFNode"),
                          ({"v_threshold": 0.25}, "'2': LIFNode\\(v_threshold=0.25")):
        other = build_model("mnist_conv", (1, 8, 8), 10, seed=3, **kwargs)  # same tensors, other neurons
        with pytest.raises(ValueError, match=f"architecture mismatch at module {where}"):
            checkpoint.load_into(other, path)  # loaded silently before
    assert not list(tmp_path.glob("*.tmp"))


class _Payload:
    """A pickle that calls os.system (touching `marker`) when unpickled."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {shlex.quote(str(self.marker))}",)


def _one_line_refusal(path, match):
    with pytest.raises(ValueError, match=match) as info:
        checkpoint.load(path)
    assert "\n" not in str(info.value)


def test_a_planted_pickle_never_runs(tmp_path):
    marker = tmp_path / "ran"
    torch.save({"version": 1, "model": _Payload(marker)}, tmp_path / "planted.pt")  # shaped like a v1 checkpoint
    torch.save({"format": checkpoint.FORMAT, "version": checkpoint.CHECKPOINT_VERSION, "header": _Payload(marker),
                "tensors": {}}, tmp_path / "header.pt")  # shaped like a v2 checkpoint
    with open(tmp_path / "raw.pt", "wb") as fh:  # a plain pickle, not a torch zip
        pickle.dump(_Payload(marker), fh, protocol=2)
    for name in ("planted.pt", "header.pt", "raw.pt"):
        with pytest.raises(ValueError, match=rf"checkpoint .*{name}: not a readable version-2 checkpoint") as info:
            checkpoint.load(tmp_path / name)
        assert "\n" not in str(info.value)
    assert "refused pickle global posix.system" in str(info.value) or "nsupported" in str(info.value)
    assert not marker.exists()


def test_version_1_checkpoints_and_damaged_files_are_refused(tmp_path):
    model = build_model("mnist_conv", (1, 8, 8), 10, seed=0)
    torch.save({"version": 1, "model": model, "signature": checkpoint.signature(model), "config": {}, "extra": {},
                "versions": checkpoint.versions()}, tmp_path / "v1.pt")  # the format-1 layout
    _one_line_refusal(tmp_path / "v1.pt", "refused pickle global torch.nn.modules.container.Sequential")
    checkpoint.save(model, tmp_path / "ok.pt")
    data = (tmp_path / "ok.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[:len(data) // 2])
    _one_line_refusal(tmp_path / "cut.pt", "not a readable version-2 checkpoint")
    raw = torch.load(tmp_path / "ok.pt", weights_only=True)
    torch.save({**raw, "version": 3}, tmp_path / "v3.pt")
    _one_line_refusal(tmp_path / "v3.pt", "version 3 is not 2")
    with pytest.raises(FileNotFoundError):
        checkpoint.load(tmp_path / "absent.pt")
    with zipfile.ZipFile(tmp_path / "ok.pt") as archive:  # flip one byte inside the largest stored tensor
        member = max(archive.infolist(), key=lambda m: m.file_size if "/data/" in m.filename else -1)
    head = member.header_offset  # its local header: 30 bytes, then the name and extra fields, then the data
    names, extra = (int.from_bytes(data[head + i:head + i + 2], "little") for i in (26, 28))
    flipped = bytearray(data)
    flipped[head + 30 + names + extra + 8] ^= 0x01
    (tmp_path / "flip.pt").write_bytes(bytes(flipped))
    _one_line_refusal(tmp_path / "flip.pt", "fails its CRC check")  # torch's reader loaded it with one weight off
    _one_line_refusal(tmp_path, "is a folder, not a checkpoint file")


@pytest.mark.parametrize("edit, match", [
    (lambda h: h["module"].update({"class": "os:system"}), "'os:system' is not an allowed module class"),
    (lambda h: h["module"].update({"class": "builtins:object"}), "'builtins:object' is not an allowed"),
    (lambda h: h["module"]["modules"][0][1].update({"class": "torch.nn.parallel.distributed:DistributedDataParallel"}),
     "is not an allowed module class"),
    (lambda h: h["module"]["attrs"].update({"x": {"call": "os.system"}}), "malformed value"),
    (lambda h: h["module"]["modules"][0][1].update({"hooks": ["os:system"]}), "hook 'os:system' is not one of"),
    (lambda h: h["module"]["modules"][0][1]["buffers"].update({"running_mean": "999"}), "tensor '999' is missing"),
    (lambda h: h.update({"signature": h["signature"][1:]}), "does not match the stored signature"),
])
def test_a_tampered_header_is_refused(tmp_path, edit, match):
    checkpoint.save(build_model("mnist_conv", (1, 8, 8), 10, seed=0), tmp_path / "ok.pt")
    raw = torch.load(tmp_path / "ok.pt", weights_only=True)
    header = json.loads(raw["header"])
    edit(header)
    torch.save({**raw, "header": json.dumps(header)}, tmp_path / "bad.pt")
    _one_line_refusal(tmp_path / "bad.pt", match)


def _pruned(seed):
    model = build_model("mnist_conv", (1, 8, 8), 10, seed=seed)
    units = find_conv_units(model)
    masks = {u.conv: torch.arange(model.get_submodule(u.conv).out_channels) % 3 != 0 for u in units}
    return remove_channels(model, units, masks)


def _low_rank(seed):
    model = build_model("mnist_conv", (1, 8, 8), 10, seed=seed)
    model[4] = LowRankConv2d(model[4], 3)
    model[9] = LowRankLinear(model[9].in_features, 10, 2)
    return model


def _quantized(seed):
    model = build_model("mnist_conv", (1, 8, 8), 10, neuron="PLIF", seed=seed)
    attach(model, {"4": ReScaW(4)})
    swap_neurons(model, 6, 2.0)
    return bake(model)


def _binary_spikformer(seed):
    model = build_model("spikformer", (3, 16, 16), 10, seed=seed, depth=1, dim=16, heads=2)
    swap_attention(model, 2)
    return model


ARCHITECTURES = {
    "pruned": (_pruned, (1, 8, 8)), "low-rank": (_low_rank, (1, 8, 8)), "quantized-qlif": (_quantized, (1, 8, 8)),
    "sLIF": (lambda s: build_model("mnist_conv", (1, 8, 8), 10, neuron="sLIF", seed=s), (1, 8, 8)),
    "binary-spikformer": (_binary_spikformer, (3, 16, 16)),
    "resnet19-ternary": (lambda s: build_model("resnet19", (3, 8, 8), 10, neuron="IF", seed=s,
                                               neuron_options={"ternary": True, "reset": "soft"}), (3, 8, 8)),
}


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_compressed_architectures_round_trip_exactly(tmp_path, name):
    build, in_shape = ARCHITECTURES[name]
    model = build(0).eval()
    x = torch.rand(2, 3, *in_shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want = model(x)
    functional.reset_net(model)
    checkpoint.save(model, tmp_path / "m.pt", extra={"history": [{"loss": 0.5}]})
    payload = checkpoint.load(tmp_path / "m.pt")
    got = payload["model"]
    assert type(got) is type(model) and repr(got) == repr(model)
    assert [type(m) for m in got.modules()] == [type(m) for m in model.modules()]
    assert checkpoint.signature(got) == checkpoint.signature(model) == payload["signature"]
    assert all(torch.equal(a, b) for a, b in zip(got.state_dict().values(), model.state_dict().values()))
    assert [p.requires_grad for p in got.parameters()] == [p.requires_grad for p in model.parameters()]
    assert not got.training and payload["extra"] == {"history": [{"loss": 0.5}]}
    with torch.no_grad():
        assert torch.equal(got(x), want)
    hooks = [len(m._load_state_dict_pre_hooks) for m in got.modules() if isinstance(m, SLIFNode)]
    assert hooks == [len(m._load_state_dict_pre_hooks) for m in model.modules() if isinstance(m, SLIFNode)]
    fresh = build(1)  # load_into copies into the same architecture built anew
    checkpoint.load_into(fresh, tmp_path / "m.pt")
    assert all(torch.equal(a, b) for a, b in zip(fresh.state_dict().values(), model.state_dict().values()))


def test_shared_modules_and_parameters_stay_shared(tmp_path):
    fc = nn.Linear(4, 4)
    model = nn.Sequential(fc, nn.ReLU(), fc)
    model.add_module("tied", nn.Linear(4, 4))
    model.tied.weight = fc.weight
    checkpoint.save(model, tmp_path / "m.pt")
    got = checkpoint.load(tmp_path / "m.pt")["model"]
    assert got[0] is got[2] and got.tied.weight is got[0].weight


class _Outside(nn.Module):
    """A module class outside the allow-list (defined in a test)."""


def test_what_is_not_data_is_refused_at_save(tmp_path):
    cases = []
    quantized = build_model("mnist_conv", (1, 8, 8), 10, seed=0)
    attach(quantized, {"4": ReScaW(4)})  # a live parametrization (not baked)
    cases.append((quantized, "module 4: class 'torch.nn.utils.parametrize:ParametrizedConv2d' is not an allowed"))
    hooked = build_model("mnist_conv", (1, 8, 8), 10, seed=0)
    hooked[0].register_forward_hook(lambda *args: None)
    cases.append((hooked, "module 0: its _forward_hooks hook"))
    with_fn = build_model("mnist_conv", (1, 8, 8), 10, seed=0)
    with_fn[0].callback = print
    cases.append((with_fn, "0.callback: a builtin_function_or_method cannot be saved"))
    cases.append((nn.Sequential(_Outside()), r"class '[\w.]*test_checkpoint:_Outside' is not an allowed"))
    for model, match in cases:
        with pytest.raises(ValueError, match=match):
            checkpoint.save(model, tmp_path / "m.pt")
    with pytest.raises(ValueError, match="config and extra must be JSON data"):
        checkpoint.save(nn.Linear(2, 2), tmp_path / "m.pt", extra={"f": print})
    assert not list(tmp_path.iterdir())


def test_allow_list_resolves_only_loaded_project_and_torch_classes():
    assert module_tree.resolve_class("torch.nn.modules.linear:Linear") is nn.Linear
    assert module_tree.resolve_class("workloads.neurons:SLIFNode") is SLIFNode
    for name in ("torch.nn.modules.linear:Linear.__init__", "torch:Tensor", "workloads.neurons:make_neuron",
                 "workloads.not_a_module:X", "torch.nn.modules.linearX:Linear", "subprocess:Popen"):
        with pytest.raises(ValueError, match="is not an allowed module class"):
            module_tree.resolve_class(name)


def test_a_failed_write_is_an_oserror_naming_the_checkpoint_and_leaves_nothing(tmp_path):
    """torch's zip writer reports a failed write (here a file size limit, as on a full disk) as RuntimeError: save
    raises OSError naming the checkpoint (the CLI's one line, exit 2) and leaves neither it nor a temp file."""
    import subprocess
    import sys
    script = ("import resource, sys, torch\n"
              "from workloads import checkpoint\n"
              "resource.setrlimit(resource.RLIMIT_FSIZE, (20000, 20000))\n"
              "try:\n"
              "    checkpoint.save(torch.nn.Linear(100, 100), sys.argv[1])\n"
              "except OSError as exc:\n"
              "    print('OSError', exc)\n")
    out = subprocess.run([sys.executable, "-c", script, str(tmp_path / "m.pt")], capture_output=True, text=True,
                         timeout=120)
    assert out.stdout.startswith(f"OSError checkpoint {tmp_path / 'm.pt'}: writing failed"), out.stderr[-500:]
    assert list(tmp_path.iterdir()) == []
