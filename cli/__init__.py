"""The `trigan` command line."""
