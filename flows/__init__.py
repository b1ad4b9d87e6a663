"""Prefect flows composing tasks into stages and the pipeline; the `adapterflow` CLI."""

import tasks  # noqa: F401  (sets Prefect's home before Prefect is imported)
