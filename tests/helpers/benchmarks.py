"""The benchmark scripts, which are not a package (tests load them by file name), and the real GLUE
data they run on."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
GLUE_DIR = Path(__file__).resolve().parents[3] / "shared" / "data" / "glue"


def load_script(name: str):
    """benchmarks/<name>.py as a module, registered in sys.modules (dataclasses look their module up
    there), with benchmarks/ on the path for the scripts' imports of each other."""
    if str(BENCHMARKS) not in sys.path:
        sys.path.insert(0, str(BENCHMARKS))
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
