"""The reader's side: the embeddable chat widget (static JS/CSS) and the demo site that shows it."""

from bookchat.web.router import router

__all__ = ["router"]
