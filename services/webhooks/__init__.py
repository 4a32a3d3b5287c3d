"""webhooks: OpenAI's webhook-endpoints API, signing secrets sealed at rest, and signed deliveries of public events
that leave only through the SSRF-guarded egress."""
