"""The bookchat test suite."""
