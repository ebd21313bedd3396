"""Grids and tuning: models x parameters x datasets x step sizes x seeds, each cell one
replay, on Ray (embedded locally, or a cluster) or in local processes.

``run_grid(spec)`` / ``recinc grid SPEC`` and ``tune_model(...)`` / ``recinc tune MODEL``;
see ``docs/grid.md``. Importing this package does not import Ray.
"""

from .grid import GridResult, run_grid
from .results import aggregate, read_cells
from .spec import Cell, GridSpec, SpecError, load_spec
from .tune import TuneResult, parse_space, tune_model

__all__ = ["Cell", "GridResult", "GridSpec", "SpecError", "TuneResult", "aggregate",
           "load_spec", "parse_space", "read_cells", "run_grid", "tune_model"]
