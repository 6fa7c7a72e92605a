"""Configuration: a run config (one pydantic model per section) and a sweep/search spec (a base run config plus
axes), loaded from YAML and validated with one-line errors."""
