-- Which vector store holds each collection's index: the id written into the Qdrant collection when it was built.
-- A process whose vector store holds another id (say, a second replica with a local Qdrant folder of its own)
-- refuses to start instead of answering from an index that silently diverges.
CREATE TABLE vector_indexes (
    collection text PRIMARY KEY CHECK (length(collection) <= 255),
    index_id   text NOT NULL CHECK (length(index_id) <= 64),
    location   text NOT NULL CHECK (length(location) <= 2000),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
