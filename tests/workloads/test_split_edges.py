"""The edge layers the quantization methods and DSP keep: the first and the last weight layer, and every layer of
a module the model names in `readouts` (BESTformer's two classifier heads)."""
from torch import nn

from workloads import compression as C
from workloads.compression.quant import split_edges
from workloads.data import load_dataset
from workloads.models import build_model
from workloads.train import TrainConfig


class _TwoHeads(nn.Module):
    def __init__(self, readouts=("head", "aux")):
        super().__init__()
        self.stem, self.mid = nn.Linear(4, 8), nn.Linear(8, 8)
        self.head, self.aux = nn.Linear(8, 3), nn.Sequential(nn.Linear(8, 3))
        self.readouts = readouts


def test_readout_layers_are_edges_wherever_they_sit():
    assert split_edges(_TwoHeads()) == (["stem", "head", "aux.0"], ["mid"])
    assert split_edges(_TwoHeads(readouts=())) == (["stem", "aux.0"], ["mid", "head"])  # first and last only
    assert split_edges(nn.Sequential(nn.Linear(2, 2))) == (["0"], [])


def test_bestformer_heads_stay_full_precision_under_every_quantizer():
    ds = load_dataset("digits", seed=0)
    model = build_model("bestformer_mnist", ds.in_shape, ds.n_classes, seed=0)
    assert set(model.readouts) <= set(split_edges(model)[0])
    for method in ("binary", "q_snn", "qp_snn"):
        _, info = C.compress(method, model, ds, 0.0, C.CONFIGS[method](finetune_epochs=0),
                             train_cfg=TrainConfig(n_timesteps=2), progress=False)
        assert info.weight_bits.get("head") == info.weight_bits.get("head_kd"), method
        assert all(info.weight_bits.get(h, 32) >= 8 for h in model.readouts), (method, info.weight_bits)
