"""file-ingest's rules, with no I/O: ids, names, records, upload state, assembly plans, ranges, references."""
