"""vLLM on the MoE DeepSeek-V3 test model on a CPU: the base model serves; adapters are refused.

vLLM's fused-MoE LoRA kernels are Triton (GPU) only, so a CPU worker for a model with MoE layers
starts with LoRA off and refuses every adapter with a result code rather than crash or serve it
partly. The MoE LoRA path itself is checked on a GPU by tests/gpu/vllm_moe_lora.py.
"""
import uuid

import pytest

from services.gpu_worker.engines.torch_engine.sampling import SamplingSpec
from services.gpu_worker.engines.torch_engine.sequence import GenerationRequest
from services.gpu_worker.errors import AdapterRejected
from tests.vllm.conftest import MOE
from tests.vllm.peft_adapters import make_adapter, peft_greedy

pytestmark = pytest.mark.asyncio(loop_scope="module")
MODEL = MOE
MAX_TOKENS = 24


async def test_the_moe_model_starts_without_lora_and_matches_transformers(engine, model_dir):
    assert engine.lora_enabled is False
    prompt = engine.chat_prompt([{"role": "user", "content": "Hello there"}])
    request = GenerationRequest(request_id=uuid.uuid4().hex, prompt=prompt, max_tokens=MAX_TOKENS,
                                sampling=SamplingSpec(temperature=0.0))
    final = [u async for u in engine.generate(request)][-1]
    expected, tokens = peft_greedy(model_dir, None, prompt, MAX_TOKENS)
    assert final.output_text.rstrip("\ufffd") == expected.rstrip("\ufffd")
    assert final.completion_tokens == tokens


async def test_an_adapter_is_refused_with_a_code_on_a_cpu_moe_worker(engine, model_dir, tmp_path):
    adapter_dir = make_adapter(model_dir, "attention-r8", tmp_path / "a", seed=3)
    with pytest.raises(AdapterRejected) as refused:
        engine.read_adapter("a:1:2", adapter_dir / "adapter_config.json",
                            adapter_dir / "adapter_model.safetensors", 1 << 30)
    assert refused.value.code == "module_unsupported_by_engine"
