"""The `bark` command: the app (`app.py`), one module per command or group, and what they share
(`options.py`, `output.py`, `errors.py`)."""

from .app import app


def main() -> None:
    """The `bark` script."""
    app(prog_name="bark")


__all__ = ["app", "main"]
