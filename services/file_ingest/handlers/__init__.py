"""HTTP handlers of file-ingest, one module per resource."""
