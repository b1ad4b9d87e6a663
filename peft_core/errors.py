"""Errors a user can act on. Each message is one line: what is wrong, where, how to fix it.

The CLI prints `str(error)` and exits non-zero instead of showing a traceback, so every check
that guards user input raises one of these.
"""


class AdapterflowError(Exception):
    """Base class: an error caused by user input (config, data, artifacts), not a bug."""


class ConfigError(AdapterflowError):
    """A config file or parameter is invalid."""


class DataError(AdapterflowError):
    """A data folder, file, row or split is missing or malformed."""


class UnknownTaskError(AdapterflowError):
    """A task name that is not in the registry."""


class BackboneError(AdapterflowError):
    """A backbone name that cannot be resolved or an architecture we have no sites for."""


class ArtifactError(AdapterflowError):
    """An adapter folder that is missing, incomplete or made for another backbone/placement."""
