-- The first schema of bookchat: accounts, conversations, documents, feedback and ingestion runs.
CREATE TABLE users (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    email         text NOT NULL CHECK (length(email) <= 320),
    password_hash text NOT NULL CHECK (length(password_hash) <= 1000),
    display_name  text CHECK (length(display_name) <= 100),
    role          text NOT NULL DEFAULT 'user' CHECK (role IN ('user', 'admin')),
    disabled      boolean NOT NULL DEFAULT false,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
-- Case-insensitive uniqueness (citext is not shipped by every PostgreSQL build, the embedded one included).
CREATE UNIQUE INDEX users_email_key ON users (lower(email));

CREATE TABLE refresh_tokens (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    family_id   uuid NOT NULL,
    token_hash  text NOT NULL UNIQUE,
    expires_at  timestamptz NOT NULL,
    revoked_at  timestamptz,
    replaced_by uuid REFERENCES refresh_tokens (id) ON DELETE SET NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX refresh_tokens_family_idx ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_user_idx ON refresh_tokens (user_id);

-- owner_id is a principal: "user:<uuid>" or "guest:<uuid>", so guests own conversations too.
CREATE TABLE conversations (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    owner_id   text NOT NULL CHECK (length(owner_id) <= 200),
    title      text NOT NULL DEFAULT '' CHECK (length(title) <= 200),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
-- The history list: newest first per owner, cursor on (updated_at, id).
CREATE INDEX conversations_owner_recent_idx ON conversations (owner_id, updated_at DESC, id DESC);

CREATE TABLE messages (
    id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    conversation_id   uuid NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    role              text NOT NULL CHECK (role IN ('user', 'assistant')),
    content           text NOT NULL,
    selected_text     text,
    page_url          text,
    citations         jsonb NOT NULL DEFAULT '[]'::jsonb,
    mode              text CHECK (mode IN ('retrieval', 'selection', 'extractive')),
    model             text,
    latency_ms        integer CHECK (latency_ms >= 0),
    prompt_tokens     integer CHECK (prompt_tokens >= 0),
    completion_tokens integer CHECK (completion_tokens >= 0),
    status            text NOT NULL DEFAULT 'ok' CHECK (status IN ('pending', 'ok', 'error', 'cancelled')),
    error_code        text,
    created_at        timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX messages_conversation_idx ON messages (conversation_id, created_at, id);

-- id is derived from (collection, source_path), so a crash before this row is written is repaired by a rerun.
CREATE TABLE documents (
    id              uuid PRIMARY KEY,
    collection      text NOT NULL,
    source_path     text NOT NULL CHECK (length(source_path) <= 1000),
    title           text NOT NULL CHECK (length(title) <= 500),
    url             text CHECK (length(url) <= 2000),
    content_hash    text NOT NULL,
    chunk_count     integer NOT NULL CHECK (chunk_count >= 0),
    embedding_model text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (collection, source_path)
);

CREATE TABLE feedback (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    message_id uuid NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    owner_id   text NOT NULL CHECK (length(owner_id) <= 200),
    rating     text NOT NULL CHECK (rating IN ('up', 'down')),
    comment    text CHECK (length(comment) <= 2000),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (message_id, owner_id)
);

CREATE TABLE ingest_runs (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    collection  text NOT NULL,
    status      text NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'ok', 'failed')),
    added       integer NOT NULL DEFAULT 0,
    updated     integer NOT NULL DEFAULT 0,
    unchanged   integer NOT NULL DEFAULT 0,
    removed     integer NOT NULL DEFAULT 0,
    chunks      integer NOT NULL DEFAULT 0,
    error       text,
    started_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz
);
CREATE INDEX ingest_runs_collection_idx ON ingest_runs (collection, started_at DESC);
