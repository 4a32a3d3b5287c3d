"""vLLM behind the worker's engine interface: AsyncLLM with LoRA, adapters handed over from our disk cache.

Imported only in the vLLM environment (deploy/ensure-vllm.sh); `loraserve worker --engine vllm`
re-executes itself there.
"""
