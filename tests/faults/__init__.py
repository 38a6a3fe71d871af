"""Fault tests: the service while PostgreSQL, Redis, PgBouncer, the model or an ingestion fail under it."""
