-- Answers still being written: a handful at any moment, so the sweep of interrupted answers (an answer a crash
-- left pending) finds them without reading the whole table.
CREATE INDEX messages_pending_idx ON messages (created_at) WHERE status = 'pending';
