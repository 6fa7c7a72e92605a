"""Fixtures of the peer cross-checks: peers are optional dev extras, so the tests that need one skip without it."""
import pytest


@pytest.fixture(scope="session")
def sanafe_arch():
    """SANA-FE's own Loihi architecture (its shipped loihi.yaml), loaded once and shared by every SanafeRun."""
    sanafe = pytest.importorskip("sanafe")
    return sanafe.load_loihi()
