"""gpu-worker: one base model per process, many LoRAs served in mixed batches (the only package importing torch).

Layout, from the weights up: targets (what may be adapted) -> lora_config / adapter_layout /
adapter_files (PEFT files -> checked engine weights) -> disk_cache / adapter_cache (blob store ->
disk -> CPU) -> slots / lora_bank (CPU -> slots, LRU) -> lora_ops / lora_modules (each row's LoRA
term inside the model) -> kv_cache / runner (a forward over rows of any length) -> sampling /
text_stream / engine (continuous batching) -> engine_loop / worker (asyncio) -> inference_jobs /
validation_jobs / outcomes (the bus) -> app (the ServicePart).
"""
