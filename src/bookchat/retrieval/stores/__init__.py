"""The vector-store engines behind `retrieval.store.VectorStore`: one interface (Qdrant's API), three engines."""
