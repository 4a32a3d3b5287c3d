"""HTTP handlers, each a function of (registry, request); app.py binds them in its routing table."""
