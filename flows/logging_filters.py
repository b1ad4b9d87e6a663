"""Keep user errors to one line in Prefect's logs, and out of them where the CLI prints them last.

Prefect logs a failing task or flow with its traceback, and every enclosing flow logs the same
exception again. For an `AdapterflowError` (bad config, data or artifact) the message already says
what is wrong and how to fix it, so the traceback is noise; bugs keep their tracebacks.

In a deployment's flow run the log is all a user sees, so each such record becomes one line. Under
the CLI, which prints the error itself as its last line, the records that carry it are dropped
(kept in `errors`, in order, for the CLI to print), and lines that quote it say "see below" instead.
"""

from __future__ import annotations

import logging

from peft_core.errors import AdapterflowError

RUN_LOGGERS = ("prefect.task_runs", "prefect.flow_runs")
# What is logged while the process exits, after the CLI's last line: the temporary Prefect server
# stopping ("prefect"), its event and log workers draining (loggers named after their class), and a
# local Dask cluster's nanny killing a worker slow to exit (its final garbage collection).
EXIT_LOGGERS = ("prefect", "EventsWorker", "APILogWorker", "distributed.nanny")
EXIT_MESSAGES = ("Stopping temporary server", "Still processing items", "Worker process still alive")


class UserErrorWithoutTraceback(logging.Filter):
    def __init__(self) -> None:
        super().__init__()
        self.shown_by_cli = False
        self.errors: list[str] = []

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, AdapterflowError):
            if self.shown_by_cli:
                if str(error) not in self.errors:
                    self.errors.append(str(error))
                return False
            record.exc_info = None
            record.exc_text = None
            record.msg, record.args = f"{type(error).__name__}: {error}", None
        elif self.shown_by_cli and self.errors:
            message = record.getMessage()
            for text in self.errors:
                message = message.replace(text, "see below")
            record.msg, record.args = message, None
        return True


class ExitNoiseQuiet(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(EXIT_MESSAGES)


_user_errors = UserErrorWithoutTraceback()


def install(shown_by_cli: bool = False) -> None:
    """Attach the filter to the loggers Prefect reports failed runs with; `shown_by_cli`: this
    process is the CLI, which prints user errors last (see `logged_user_errors`).

    Logger-level filters survive Prefect re-configuring its handlers when a flow starts.
    """
    _user_errors.shown_by_cli = shown_by_cli
    _user_errors.errors.clear()
    for name in RUN_LOGGERS:
        logger = logging.getLogger(name)
        if _user_errors not in logger.filters:
            logger.addFilter(_user_errors)
    if shown_by_cli:
        for name in EXIT_LOGGERS:
            logger = logging.getLogger(name)
            if not any(isinstance(f, ExitNoiseQuiet) for f in logger.filters):
                logger.addFilter(ExitNoiseQuiet())


def shown_by_cli() -> bool:
    """Whether this process is the CLI that prints user errors last (its Dask workers then keep quiet too)."""
    return _user_errors.shown_by_cli


def logged_user_errors() -> list[str]:
    """The user errors Prefect reported in this process while the CLI holds them back, in order."""
    return list(_user_errors.errors)
