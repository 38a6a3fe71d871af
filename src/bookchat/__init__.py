"""bookchat: grounded answers about a book, with citations to the exact section."""

__version__ = "0.1.0"
