"""Callbacks of the framework (Lightning's own are used directly from configs)."""
