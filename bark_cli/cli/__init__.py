"""The `bark` command. Each command group lives in its own module; importing them registers
their commands on the one app in `common`."""

from . import batch, bench, models, say, voices  # noqa: F401 - registers the commands
from .common import app, reflow_help

reflow_help(app)


def main() -> None:
    """The `bark` script."""
    app(prog_name="bark")
