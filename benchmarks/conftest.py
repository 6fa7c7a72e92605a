"""Benchmarks (run with `make bench`, i.e. `pytest -m benchmark benchmarks`; the default pytest run deselects the
marker). They share the peer helpers of tests/crosscheck (SANA-FE bridge, small IF networks) and write their
results to reports/benchmarks/."""
import sys
from pathlib import Path

CROSSCHECK = Path(__file__).resolve().parents[1] / "tests" / "crosscheck"
if str(CROSSCHECK) not in sys.path:  # sanafe_bridge, peer_nets
    sys.path.insert(0, str(CROSSCHECK))

