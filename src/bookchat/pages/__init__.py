"""Reader pages: a chapter personalised for the reader's background or translated, section by section, cached."""
