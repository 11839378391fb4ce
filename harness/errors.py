"""One error tree for the whole harness.

Every message says what went wrong *and* what to do about it, so the CLI can
print it as-is and exit non-zero without a traceback.
"""

from __future__ import annotations


class HarnessError(Exception):
    """Base of every error the harness raises on purpose.

    `fix` is the one sentence telling the user how to get unstuck; it is
    appended to the message so the two always travel together.
    """

    exit_code = 2

    def __init__(self, message: str, fix: str | None = None) -> None:
        self.message = message
        self.fix = fix
        super().__init__(f"{message}: {fix}" if fix else message)


class UsageError(HarnessError):
    """A flag, selector or argument the user gave cannot be honoured."""


class InputFileError(HarnessError):
    """A file the user pointed at is missing, unreadable or of the wrong kind."""


class ModelError(HarnessError):
    """A model file is missing, corrupt, or needs ops this runtime lacks."""


class DeviceError(HarnessError):
    """A device is unknown, offline, unauthorized or stopped answering."""


class SchemaError(HarnessError):
    """A persisted file (results, manifest, policy) has an unsupported version or shape."""


class DownloadError(HarnessError):
    """A file the harness fetches from the network could not be downloaded whole."""


class PinMismatchError(HarnessError):
    """A download differs from what a lock file pins (a changed nightly, a tampering proxy)."""


class MissingExtraError(HarnessError):
    """A command needs an optional part of tflite-farm that this installation lacks (e.g. TensorFlow)."""
