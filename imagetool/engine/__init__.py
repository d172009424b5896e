"""The container engine (placeholder docstring: the lead writes this one)."""
