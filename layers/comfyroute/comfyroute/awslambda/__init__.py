"""Lambda glue: Powertools, event models and the wrappers that make handlers."""
