"""Fair scheduling across orgs before the shared queue (see gate.py)."""
