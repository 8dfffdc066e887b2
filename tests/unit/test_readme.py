"""The README tour runs as written."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_tour_runs(capsys):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert len(blocks) >= 5
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, str(README), "exec"), namespace)
    out = capsys.readouterr().out
    assert "['/shots/s01/b.exr']" in out
    assert "{'count': 1, 'ids': ['/shots/s01/a.exr']}" in out
    assert "400 search error" in out
    assert "False" in out.splitlines()[-4:] or "False" in out
