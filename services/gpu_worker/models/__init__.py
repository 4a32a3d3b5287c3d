"""Base models built from the catalogue (the tiny DeepseekV3, its tokenizer) and adapter training for demos."""
