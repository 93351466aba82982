"""YAML presets shipped with trigan."""
