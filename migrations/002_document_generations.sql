-- Documents keep their source, so the vector index can always be rebuilt from the database, and their chunks
-- are written as numbered generations, so a failed re-ingestion leaves the previous version searchable.
ALTER TABLE documents
    -- The generation of the points that hold this row's content (point ids and the `generation` payload).
    ADD COLUMN generation      integer NOT NULL DEFAULT 0 CHECK (generation >= 0),
    -- True while points of other generations may remain in the index: set before a write, cleared after the
    -- points of other generations are deleted; the next ingestion deletes what a failed one left.
    ADD COLUMN needs_cleanup   boolean NOT NULL DEFAULT false,
    -- The bytes as ingested, and what was given with them (title, url, format, path in the book, base URL).
    ADD COLUMN source          bytea,
    ADD COLUMN source_options  jsonb NOT NULL DEFAULT '{}'::jsonb;
CREATE INDEX documents_cleanup_idx ON documents (collection) WHERE needs_cleanup;
