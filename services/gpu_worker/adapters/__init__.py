"""Adapters from blob store to engine: disk and CPU caches, PEFT config and key layouts, checked weights."""
