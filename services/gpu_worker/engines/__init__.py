"""The engines a worker can serve its model with."""
