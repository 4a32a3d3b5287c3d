"""The jobs a worker consumes: inference, GPU validation, cancels, and where their outcomes go."""
