"""Documents: loaders, chunking, the idempotent ingestion pipeline and the admin documents API."""
