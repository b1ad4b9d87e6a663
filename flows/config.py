"""The experiment config moved to `tasks/config.py` (units and flows both read it, and `tasks/` must
not import `flows/`); this name stays importable for scripts and notebooks written against it."""

from tasks.config import *  # noqa: F401,F403
from tasks.config import load_config, parse_overrides, PipelineConfig  # noqa: F401  (the names most used)
