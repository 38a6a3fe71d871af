-- Whether an answer answered: false when the book (or the selection) does not cover the question, as the
-- retrieval gate or the model itself found. NULL for questions and for answers that did not complete.
ALTER TABLE messages ADD COLUMN answered boolean;
