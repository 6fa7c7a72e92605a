"""The README's Python example runs as written (a user's first code must not drift from the API)."""
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.mark.slow
def test_readme_python_example_runs(tmp_path):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert len(blocks) == 1
    script = tmp_path / "example.py"
    script.write_text(blocks[0])
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    first = done.stdout.splitlines()[0].split()
    energy_j, latency_s = float(first[0]), float(first[1])
    assert 0 < energy_j < 1e-3 and 0 < latency_s < 1e-2  # per inference on the Loihi preset: uJ and us scales
    assert "synops" in done.stdout
