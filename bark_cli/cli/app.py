"""The `bark` app: every command and command group, registered here and nowhere else.

Each command lives in the module named after it (`say.py`, `batch.py`, `bench.py`) and each group
in its own (`presets.py`, `models.py`); none of them knows the app. Importing this module loads no
PyTorch: the commands that run a model import it when they run.
"""

from __future__ import annotations

import inspect
from typing import Annotated

import typer
from rich.markup import escape

from .. import __version__
from .batch import BATCH_EXAMPLES, batch
from .bench import BENCH_EXAMPLES, bench
from .errors import EXIT_HELP, HELP_OPTIONS, BarkGroup
from .models import models_app
from .presets import presets_app
from .say import SAY_EXAMPLES, say
from .serve import SERVE_EXAMPLES, serve

app = typer.Typer(
    cls=BarkGroup,
    name="bark",
    help=f"Text to speech, laughter and music with Suno's Bark, in plain PyTorch.\n\n{EXIT_HELP}",
    epilog=escape('Example: bark say "Hello [laughter]" -o hello.wav'),
    context_settings={"help_option_names": list(HELP_OPTIONS)},
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        print(f"bark-cli {__version__}")
        raise typer.Exit()


def _root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    pass


def reflow_help(typer_app: typer.Typer) -> None:
    """Join the lines of each help paragraph of every command. Typer keeps a docstring's line
    breaks past its first paragraph, and a terminal narrower than the source lines then breaks
    them a second time, leaving ragged half-empty lines."""
    for info in typer_app.registered_commands:
        text = inspect.cleandoc(info.help or info.callback.__doc__ or "")
        info.help = "\n\n".join(" ".join(paragraph.split()) for paragraph in text.split("\n\n"))
    for group in typer_app.registered_groups:
        reflow_help(group.typer_instance)


app.callback()(_root)
app.command(epilog=BATCH_EXAMPLES)(batch)
app.command(epilog=BENCH_EXAMPLES)(bench)
app.command(epilog=SAY_EXAMPLES)(say)
app.command(epilog=SERVE_EXAMPLES)(serve)
app.add_typer(presets_app, name="presets")
app.add_typer(models_app, name="models")
reflow_help(app)
