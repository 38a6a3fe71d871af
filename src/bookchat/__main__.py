"""`python -m bookchat` runs the command line."""

from bookchat.cli import app

app()
