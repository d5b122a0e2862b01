"""The error tree of bark-cli. The library raises these; only the CLI turns them into exit codes.

Each error carries a `hint`: one sentence on how to fix it, printed after the message.
"""


class BarkError(Exception):
    """Base of every error bark-cli raises on purpose."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class InputError(BarkError):
    """Bad text or a bad option value."""


class PresetError(InputError):
    """A voice prompt that cannot be found, read or used."""


class RecordingError(InputError):
    """A recording that cannot be read, or from which no voice can be cloned."""


class CheckpointError(BarkError):
    """A model that cannot be found, downloaded or loaded."""


class DeviceError(BarkError):
    """A device, dtype or attention backend this machine cannot run."""


class OutputError(BarkError):
    """An output file that cannot be written."""


class GenerationError(BarkError):
    """A failure while generating (the input was fine)."""


# Why a download from the Hugging Face Hub failed: each cause has its own fix, so its own type.


class ModelNotFoundError(CheckpointError):
    """A Hub repository or revision that does not exist (or is private to others)."""


class HubAccessError(CheckpointError):
    """A gated or private repository this machine has no access to."""


class HubUnreachableError(CheckpointError):
    """The Hub could not be reached: name lookup, refused connection, timeout, or a server failure."""


class DownloadIncompleteError(CheckpointError):
    """A download cut short; running again resumes it."""


class NotCachedError(CheckpointError):
    """Downloads are off (HF_HUB_OFFLINE) and the file is not in the local cache."""
