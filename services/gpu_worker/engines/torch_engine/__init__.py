"""The in-repo multi-LoRA torch engine: continuous batching with adapters in slots (Punica/S-LoRA style)."""
