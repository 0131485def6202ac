"""The one exception tree of streamlsm: every error the library raises on purpose is a StreamLSMError."""

from __future__ import annotations

__all__ = [
    "StreamLSMError",
    "ConfigError",
    "DataError",
    "WireError",
    "TransportError",
    "ReservoirError",
    "ModelError",
    "ControlError",
    "CheckpointError",
]


class StreamLSMError(Exception):
    """Base of every error streamlsm raises on purpose."""


class ConfigError(StreamLSMError, ValueError):
    """A configuration value is missing, of the wrong type or out of range; names the key path."""

    def __init__(self, key: str, problem: str) -> None:
        self.key = key
        self.problem = problem
        super().__init__(f"config {key or '<root>'}: {problem}")


class DataError(StreamLSMError, ValueError):
    """A data file is missing, empty, truncated or corrupt; names the file and the byte or row."""

    def __init__(self, path: object, problem: str, *, offset: int | None = None,
                 row: int | None = None) -> None:
        self.path = str(path)
        self.problem = problem
        self.offset = offset
        self.row = row
        where = ""
        if offset is not None:
            where = f" at byte {offset}"
        elif row is not None:
            where = f" at row {row}"
        super().__init__(f"{self.path}{where}: {problem}")


class WireError(StreamLSMError, ValueError):
    """A message on the wire is malformed or over a limit; names the offending field."""

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"wire field {field!r}: {problem}")


class TransportError(StreamLSMError, OSError):
    """A socket could not be bound, connected or used (wraps zmq.ZMQError)."""


class ReservoirError(StreamLSMError, ValueError):
    """A reservoir was configured or driven inconsistently (e.g. wrong layout, unknown stream)."""


class ModelError(StreamLSMError, ValueError):
    """A model bundle or prototype set is missing, corrupt or does not fit the pipeline."""


class ControlError(StreamLSMError, ValueError):
    """A control command is unknown, malformed or not allowed."""


class CheckpointError(StreamLSMError, OSError):
    """A checkpoint could not be written or read; the previous checkpoint is left intact."""
