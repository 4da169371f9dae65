"""Import a script of the repository (benchmarks/, experiments/) that is not part of the package, by its path, so
its functions can be tested as a module's."""

import importlib.util
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def load_script(relpath: str, name: str | None = None, neighbours: bool = False):
    """The module at ``REPO / relpath`` (named ``name``, default its file stem), registered in ``sys.modules`` (so
    dataclasses and pickling inside it work); ``neighbours``: its folder goes on ``sys.path`` first, for a script
    that imports the scripts beside it."""
    path = REPO / relpath
    if neighbours and str(path.parent) not in sys.path:
        sys.path.insert(0, str(path.parent))
    spec = importlib.util.spec_from_file_location(name or path.stem, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module
