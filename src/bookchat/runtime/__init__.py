"""The running process: its resources and their FastAPI providers, the database, logging and metrics, health."""
