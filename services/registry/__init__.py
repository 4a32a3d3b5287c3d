"""The registry: LoRA documents and their validation records (`/v1/loras*`, `/v1/events`, the internal
listing)."""
