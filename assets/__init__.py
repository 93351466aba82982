"""Files the app ships (demo checkpoint, fonts, icons)."""
