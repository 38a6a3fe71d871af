-- Reader profiles and the cache of personalised and translated chapters.
-- A reader's background, asked at sign-up or later (PATCH /api/auth/me); all NULL for readers who gave none.
ALTER TABLE users
    ADD COLUMN profile_software  text CHECK (profile_software IN ('none', 'beginner', 'intermediate', 'advanced')),
    ADD COLUMN profile_hardware  text CHECK (profile_hardware IN ('none', 'hobbyist', 'professional')),
    ADD COLUMN profile_interests text CHECK (length(profile_interests) <= 300),
    ADD COLUMN profile_language  text CHECK (length(profile_language) <= 35),
    ADD COLUMN profile_updated_at timestamptz;

-- One row per section of a rewritten chapter. The key holds everything that shapes the result: the document's
-- content hash (a re-ingested, changed chapter never matches an old row), the kind, the profile bucket or the
-- language, the model and the prompt version. Rows of a deleted document go with it (ON DELETE CASCADE).
CREATE TABLE page_sections (
    document_id    uuid NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
    content_hash   text NOT NULL CHECK (length(content_hash) <= 128),
    kind           text NOT NULL CHECK (kind IN ('personalize', 'translate')),
    variant        text NOT NULL CHECK (length(variant) <= 200),
    model          text NOT NULL CHECK (length(model) <= 200),
    prompt_version text NOT NULL CHECK (length(prompt_version) <= 40),
    section_index  integer NOT NULL CHECK (section_index >= 0),
    section_count  integer NOT NULL CHECK (section_count > 0),
    markdown       text NOT NULL,
    prompt_tokens     integer NOT NULL DEFAULT 0 CHECK (prompt_tokens >= 0),
    completion_tokens integer NOT NULL DEFAULT 0 CHECK (completion_tokens >= 0),
    created_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (document_id, content_hash, kind, variant, model, prompt_version, section_index)
);

-- A chapter whose content hash changes (re-ingested with new text) loses the rows of its old text at once:
-- they could never be served again (the hash is part of the key), so they are only dead weight.
CREATE FUNCTION page_sections_drop_stale() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM page_sections WHERE document_id = NEW.id AND content_hash <> NEW.content_hash;
    RETURN NEW;
END;
$$;
CREATE TRIGGER documents_page_sections_stale
    AFTER UPDATE OF content_hash ON documents
    FOR EACH ROW WHEN (OLD.content_hash IS DISTINCT FROM NEW.content_hash AND NEW.content_hash <> 'pending')
    EXECUTE FUNCTION page_sections_drop_stale();
