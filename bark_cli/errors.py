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


class CheckpointError(BarkError):
    """A model that cannot be found, downloaded or loaded."""


class DeviceError(BarkError):
    """A device, dtype or attention backend this machine cannot run."""


class OutputError(BarkError):
    """An output file that cannot be written."""


class GenerationError(BarkError):
    """A failure while generating (the input was fine)."""
