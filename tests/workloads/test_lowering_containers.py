"""SpikingJelly containers and forward outputs the lowering meets in users' models: a MultiStepContainer of
stateless layers lowers as a SeqToANNContainer does; what it cannot follow is refused in one line naming it."""
import numpy as np
import pytest
import torch
from spikingjelly.activation_based import functional, layer, neuron
from torch import nn

from workloads.lowering import lower


def _net(container) -> nn.Module:
    return nn.Sequential(container(nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4)), neuron.LIFNode(step_mode="m"),
                         layer.Flatten(step_mode="m"), layer.Linear(256, 5, step_mode="m")).eval()


def test_a_multistep_container_of_stateless_layers_lowers_as_a_seq_to_ann_container():
    torch.manual_seed(0)
    steps, same = _net(layer.MultiStepContainer), _net(layer.SeqToANNContainer)
    same.load_state_dict(steps.state_dict())
    x = torch.rand(4, 6, 2, 8, 8).round()
    (ga, ta), (gb, tb) = lower(steps, x), lower(same, x)
    assert ga.fingerprint() == gb.fingerprint()
    assert np.array_equal(ta.offsets, tb.offsets) and np.array_equal(ta.indices, tb.indices)
    functional.reset_net(steps)
    with torch.no_grad():
        assert np.array_equal(steps(x).mean(0).argmax(-1).numpy(), ta.predictions)  # was refused by torch.fx


def test_a_multistep_container_holding_a_neuron_is_refused_naming_it():
    m = nn.Sequential(layer.MultiStepContainer(nn.Conv2d(2, 4, 3, padding=1), neuron.LIFNode()),
                      layer.Flatten(step_mode="m"), layer.Linear(256, 5, step_mode="m"))
    with pytest.raises(ValueError, match=r"^layer 0 \(MultiStepContainer\): holds the spiking neuron 0.1; put "):
        lower(m, torch.rand(3, 2, 2, 8, 8).round())


def test_an_elementwise_recurrent_container_around_a_weight_layer_says_what_it_accepts():
    m = nn.Sequential(layer.Linear(20, 8, step_mode="m"),
                      layer.ElementWiseRecurrentContainer(nn.Sequential(nn.Linear(8, 8), neuron.LIFNode()),
                                                          element_wise_function=lambda x, y: x + y, step_mode="m"),
                      layer.Linear(8, 3, step_mode="m"))
    with pytest.raises(ValueError, match=r"ElementWiseRecurrentContainer\): sub_module must be a spiking node .*got "
                                         r"Sequential; put weight layers before the container"):
        lower(m, torch.rand(5, 6, 20).round())


class _TwoHeads(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1, self.n1 = layer.Conv2d(2, 4, 3, padding=1, step_mode="m"), neuron.IFNode(step_mode="m")
        self.fl = layer.Flatten(step_mode="m")
        self.fc, self.aux = layer.Linear(256, 5, step_mode="m"), layer.Linear(256, 2, step_mode="m")

    def forward(self, x):
        a = self.fl(self.n1(self.c1(x)))
        return self.fc(a), self.aux(a)


def test_a_forward_returning_two_heads_is_refused_as_such():
    with pytest.raises(ValueError, match=r"^model: the forward must return one tensor \(the readout\), got a tuple "
                                         r"of 2"):
        lower(_TwoHeads(), torch.rand(3, 2, 2, 8, 8).round())
