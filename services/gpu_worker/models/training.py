"""Teach an exported model to answer one prompt with one phrase: a LoRA trained with plain transformers + peft.

What a user would do with their own data; the demo and the tests use it to make an adapter
whose effect is visible (greedy decoding of the prompt yields the phrase).
"""
from __future__ import annotations

import warnings
from pathlib import Path

import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer

from services.gpu_worker.engines.torch_engine.torch_threads import threads_for, torch_threads


def phrase_example(tokenizer, prompt: str, phrase: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(input ids, labels): the chat prompt, then the phrase and the end of the turn; loss on the answer only."""
    prompt_ids = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True,
                                               tokenize=True, return_dict=False)
    answer_ids = tokenizer(phrase, add_special_tokens=False)["input_ids"] + [tokenizer.convert_tokens_to_ids("<|end|>")]
    ids = torch.tensor([list(prompt_ids) + answer_ids])
    labels = ids.clone()
    labels[0, : len(prompt_ids)] = -100
    return ids, labels


def train_phrase_adapter(model_dir: str | Path, prompt: str, phrase: str, out_dir: str | Path, steps: int = 100,
                         rank: int = 8, lr: float = 4e-3, target_modules: str | list[str] = "all-linear",
                         seed: int = 0) -> Path:
    """Train and save (adapter_config.json + adapter_model.safetensors) into `out_dir`."""
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    with torch.random.fork_rng(devices=[]), torch_threads(threads_for(model.config.hidden_size)):
        torch.manual_seed(seed)
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # peft warns about fused-expert rank patterns it does apply
            peft_model = get_peft_model(model, LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=target_modules,
                                                                  task_type="CAUSAL_LM"))
        ids, labels = phrase_example(tokenizer, prompt, phrase)
        optimizer = torch.optim.AdamW([p for p in peft_model.parameters() if p.requires_grad], lr=lr)
        peft_model.train()
        for _ in range(steps):
            loss = peft_model(input_ids=ids, labels=labels).loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    out = Path(out_dir)
    peft_model.save_pretrained(out)
    return out
