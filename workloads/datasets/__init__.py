"""Dataset loaders behind `workloads.data` (the public import path): shipped image sets, CIFAR pickle folders,
DVS event files and the event-camera emulation of MNIST. Nothing here downloads."""
