"""trigan viewer: the DearPyGui desktop application."""
