"""Keep user errors to one line in Prefect's logs.

Prefect logs a failing task or flow with its traceback. For an `AdapterflowError` (bad config,
data or artifact) the message already says what is wrong and how to fix it, so the traceback is
noise; bugs keep their tracebacks.
"""

from __future__ import annotations

import logging

from peft_core.errors import AdapterflowError


class UserErrorWithoutTraceback(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, AdapterflowError):
            record.exc_info = None
            record.exc_text = None
            record.msg, record.args = f"{type(error).__name__}: {error}", None
        return True


RUN_LOGGERS = ("prefect.task_runs", "prefect.flow_runs")


def install() -> None:
    """Attach the filter to the loggers Prefect reports failed runs with.

    Logger-level filters survive Prefect re-configuring its handlers when a flow starts.
    """
    for name in RUN_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, UserErrorWithoutTraceback) for f in logger.filters):
            logger.addFilter(UserErrorWithoutTraceback())
