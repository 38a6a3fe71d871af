-- The author's insights: time to the first token of an answer, content gaps (unanswered questions grouped by
-- meaning, assigned incrementally) and what the dashboard's queries need to stay fast at 100,000 questions.
ALTER TABLE messages ADD COLUMN first_token_ms integer CHECK (first_token_ms >= 0);

-- Summary and export read answers by date; gaps read the unanswered ones.
CREATE INDEX messages_answers_created_idx ON messages (created_at) WHERE role = 'assistant';
CREATE INDEX messages_unanswered_idx ON messages (created_at) WHERE role = 'assistant' AND answered = false;
-- Disliked (or liked) answers, newest first.
CREATE INDEX feedback_rating_recent_idx ON feedback (rating, updated_at DESC, id DESC);

-- One gap: the running sum of its members' unit vectors (float32, little-endian), so its centroid is
-- sum / |sum| and a new member is one addition. Nothing here is text: the phrasings live with the questions.
CREATE TABLE insight_gaps (
    id              bigserial PRIMARY KEY,
    embedding_model text NOT NULL CHECK (length(embedding_model) <= 200),
    vector_sum      bytea NOT NULL,
    members         integer NOT NULL DEFAULT 0 CHECK (members >= 0),
    created_at      timestamptz NOT NULL DEFAULT now()
);

-- An unanswered question (its answer's message id) and the gap it was assigned to. The question's text is kept
-- here so the gaps table is one query; the row goes with its message (retention, deleted conversations).
CREATE TABLE insight_questions (
    message_id uuid PRIMARY KEY REFERENCES messages (id) ON DELETE CASCADE,
    gap_id     bigint NOT NULL REFERENCES insight_gaps (id) ON DELETE CASCADE,
    question   text NOT NULL CHECK (length(question) <= 8000),
    asked_at   timestamptz NOT NULL,
    similarity real NOT NULL
);
CREATE INDEX insight_questions_asked_idx ON insight_questions (asked_at, gap_id);
CREATE INDEX insight_questions_gap_idx ON insight_questions (gap_id, asked_at DESC);

-- One row: which embedding model the gaps were built with, the time before which every unanswered answer is
-- assigned, the salt of reader pseudonyms (readers are never shown by id), and the first UTC day not yet rolled
-- up into insight_days (every earlier day is).
CREATE TABLE insight_state (
    id              smallint PRIMARY KEY CHECK (id = 1),
    embedding_model text CHECK (length(embedding_model) <= 200),
    watermark       timestamptz NOT NULL DEFAULT '-infinity',
    pseudonym_salt  text NOT NULL DEFAULT gen_random_uuid()::text,
    days_through    date
);
INSERT INTO insight_state (id) VALUES (1);

-- The summary's rollup of closed UTC days (no answer of theirs can still change): counts per mode, and the
-- latencies of completed answers kept whole, so percentiles over any range stay exact. Numbers only.
CREATE TABLE insight_days (
    day            date NOT NULL,
    mode           text NOT NULL CHECK (length(mode) <= 20),
    questions      integer NOT NULL,
    answered       integer NOT NULL,
    judged         integer NOT NULL,
    first_token_ms integer[] NOT NULL,
    full_answer_ms integer[] NOT NULL,
    PRIMARY KEY (day, mode)
);
-- Sections cited per closed day: answers citing each (title, heading path, URL).
CREATE TABLE insight_day_sections (
    day          date NOT NULL,
    title        text NOT NULL,
    url          text,
    heading_path jsonb NOT NULL,
    answers      integer NOT NULL
);
CREATE INDEX insight_day_sections_day_idx ON insight_day_sections (day);

-- Each rating carries the time of the question it rates, so the summary counts ratings per day from this table
-- alone (joining 15,000 ratings to 100,000 answers by time was most of a summary's cost). A trigger fills it, so
-- the code that stores ratings needs no change.
ALTER TABLE feedback ADD COLUMN asked_at timestamptz;
UPDATE feedback f SET asked_at = m.created_at FROM messages m WHERE m.id = f.message_id;
CREATE FUNCTION feedback_asked_at() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.asked_at := (SELECT created_at FROM messages WHERE id = NEW.message_id);
    RETURN NEW;
END
$$;
CREATE TRIGGER feedback_asked_at BEFORE INSERT ON feedback FOR EACH ROW EXECUTE FUNCTION feedback_asked_at();
CREATE INDEX feedback_asked_idx ON feedback (asked_at) INCLUDE (rating);
