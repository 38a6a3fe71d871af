-- The query the first search of a turn actually ran (a follow-up is searched with the conversation's previous
-- question): stored with the answer, so a wrong retrieval can be told from a wrong answer.
ALTER TABLE messages ADD COLUMN search_query text CHECK (length(search_query) <= 4000);
