-- Expired refresh tokens are purged in small batches beside logins and refreshes (oldest first), so the
-- purge finds them by expiry, and each deleted row's `replaced_by` references (ON DELETE SET NULL) by index
-- instead of a scan of the whole table per row.
CREATE INDEX refresh_tokens_expires_idx ON refresh_tokens (expires_at);
CREATE INDEX refresh_tokens_replaced_by_idx ON refresh_tokens (replaced_by) WHERE replaced_by IS NOT NULL;
