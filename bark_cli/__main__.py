"""`python -m bark_cli`: the `bark` command."""

from .cli import main

main()
