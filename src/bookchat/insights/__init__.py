"""The author's side: what readers ask, which questions the book does not answer, and which answers they disliked."""
