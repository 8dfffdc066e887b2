"""Every example in the docstrings runs and shows what it says."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import damas_core.backends
import damas_core.schemas
import damas_core.sync
import pytest

import damas_core

# backends/, sync/ and schemas/ are mapped into the package: each is walked on its own
PACKAGES = (damas_core, damas_core.backends, damas_core.sync, damas_core.schemas)


def _modules() -> list[str]:
    names = set()
    for package in PACKAGES:
        names.add(package.__name__)
        for m in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            names.add(m.name)
    return sorted(n for n in names if not n.endswith("__main__"))


@pytest.mark.parametrize("name", _modules())
def test_docstring_examples(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # examples that write files write them here
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS, verbose=False)
    assert result.failed == 0, f"{result.failed} example(s) of {name} failed (run with -s)"
