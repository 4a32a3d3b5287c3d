"""Runs a DeepseekV3-family model over a batch of sequences, each with its own adapter slot.

The decoder layers, norms, MLPs and MoE blocks are transformers' own modules (with the
multi-LoRA wrappers installed); attention (MLA) is driven here so that every sequence keeps
its own keys and values in a packed cache and a batch may hold sequences of any lengths.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from transformers.models.deepseek_v3 import modeling_deepseek_v3 as hf_deepseek

from services.gpu_worker.engines.torch_engine.kv_cache import CacheShape, KvCache
from services.gpu_worker.engines.torch_engine.lora_modules import LoraContext
from services.gpu_worker.engines.torch_engine.lora_ops import ForwardPlan


@dataclass
class _Attend:
    """How this forward's attention reads and writes the cache."""

    prefill_rows: list[int] | None  # prefill: rows being filled; decode: None
    mask: torch.Tensor  # bool, broadcast to [n, 1, T_query, T_key], in cache row order
    positions: torch.Tensor  # [n, T]
    key_len: int = 0  # decode: keys to read per row
    rows: torch.Tensor | None = None  # decode: the cache row of each row of the forward
    back: torch.Tensor | None = None  # decode, rows run out of cache order: each cache row's place in the forward


class ModelRunner:
    def __init__(self, model, context: LoraContext, num_slots: int, max_rows: int, max_len: int):
        config = model.config
        self.model, self.context, self.num_slots = model, context, num_slots
        self.heads = config.num_attention_heads
        self.nope, self.rope, self.value_dim = config.qk_nope_head_dim, config.qk_rope_head_dim, config.v_head_dim
        self.kv_rank = config.kv_lora_rank
        self.max_len = min(max_len, config.max_position_embeddings)
        self.pad_id = config.pad_token_id if config.pad_token_id is not None else 0
        self.rotate = hf_deepseek.apply_rotary_pos_emb_interleave if config.rope_interleave \
            else hf_deepseek.apply_rotary_pos_emb
        param = next(model.parameters())
        self.device, self.dtype = param.device, param.dtype
        shape = CacheShape(len(model.model.layers), max_rows, self.heads, self.max_len,
                           self.nope + self.rope, self.value_dim)
        self.cache = KvCache(shape, self.dtype, self.device)

    # -- public -----------------------------------------------------------------------
    @torch.inference_mode()
    def prefill(self, prompts: list[list[int]], slots: list[int], all_logits: bool = False) -> tuple[list[int], torch.Tensor]:
        """Start new sequences; returns their cache rows and the logits after each prompt ([n, V], or [n, T, V])."""
        lengths = torch.tensor([len(p) for p in prompts], device=self.device)
        steps = int(lengths.max())
        ids = torch.full((len(prompts), steps), self.pad_id, dtype=torch.long, device=self.device)
        for i, prompt in enumerate(prompts):
            ids[i, : len(prompt)] = torch.tensor(prompt, device=self.device)
        rows = self.cache.claim(len(prompts))
        span = torch.arange(steps, device=self.device)
        causal = span[None, :] <= span[:, None]
        mask = (causal[None] & (span[None, None, :] < lengths[:, None, None])).unsqueeze(1)
        attend = _Attend(rows, mask, span.expand(len(prompts), steps))
        hidden = self._forward(ids, self.context.plan_for(slots, steps, self.device), attend)
        self.cache.advance(rows, lengths.tolist())
        if all_logits:
            return rows, self.model.lm_head(hidden).float()
        last = hidden[torch.arange(len(prompts), device=self.device), lengths - 1]
        return rows, self.model.lm_head(last).float()

    @torch.inference_mode()
    def decode(self, tokens: list[int], slots: list[int]) -> torch.Tensor:
        """One token for every row in use (rows 0..n-1, in order); returns logits [n, V].

        The forward may run the rows in another order, the one that puts every rank bucket's rows in entry
        order (LoraContext.decode_plan): then every adapted weight adds its terms in place, and only
        attention's query and output change order, twice a layer."""
        count = len(tokens)
        if count != self.cache.rows_in_use:
            raise ValueError("decode needs one token per row in use")
        order, plan = self.context.decode_plan(slots, self.device)
        run = range(count) if order is None else order
        lengths = self.cache.lengths
        key_len = max(lengths) + 1
        mask = (torch.arange(key_len, device=self.device)[None, :]
                <= torch.tensor(lengths, device=self.device)[:, None])[:, None, None, :]
        positions = torch.tensor([lengths[row] for row in run], device=self.device)
        ids = torch.tensor([tokens[row] for row in run], device=self.device).unsqueeze(1)
        back = None if order is None else torch.tensor(sorted(range(count), key=order.__getitem__),
                                                       device=self.device)
        attend = _Attend(None, mask, positions.unsqueeze(1), key_len, torch.tensor(run, device=self.device), back)
        hidden = self._forward(ids, plan, attend)[:, -1]
        self.cache.advance(list(range(count)), [1] * count)
        if back is not None:
            hidden = hidden.index_select(0, back)
        return self.model.lm_head(hidden).float()

    def release(self, row: int) -> int | None:
        return self.cache.release(row)

    def room_left(self, row: int) -> int:
        return self.max_len - self.cache.lengths[row]

    # -- forward ----------------------------------------------------------------------
    def _forward(self, ids: torch.Tensor, plan: ForwardPlan | None, attend: _Attend) -> torch.Tensor:
        inner = self.model.model
        self.context.plan = plan
        try:
            hidden = inner.embed_tokens(ids)
            cos, sin = inner.rotary_emb(hidden, attend.positions)
            for index, layer in enumerate(inner.layers):
                residual = hidden
                hidden = residual + self._attention(layer.self_attn, index, layer.input_layernorm(hidden),
                                                    cos, sin, attend)
                residual = hidden
                hidden = residual + layer.mlp(layer.post_attention_layernorm(hidden))
            return inner.norm(hidden)
        finally:
            self.context.plan = None

    def _attention(self, attn, layer: int, x: torch.Tensor, cos, sin, attend: _Attend) -> torch.Tensor:
        batch, steps, _ = x.shape
        if attn.q_lora_rank is None:
            query = attn.q_proj(x)
        else:
            query = attn.q_b_proj(attn.q_a_layernorm(attn.q_a_proj(x)))
        query = query.view(batch, steps, self.heads, self.nope + self.rope).transpose(1, 2)
        q_pass, q_rot = torch.split(query, [self.nope, self.rope], dim=-1)
        kv_latent, k_rot = torch.split(attn.kv_a_proj_with_mqa(x), [self.kv_rank, self.rope], dim=-1)
        k_rot = k_rot.view(batch, 1, steps, self.rope)
        q_rot, k_rot = self.rotate(q_rot, k_rot, cos, sin)
        kv = attn.kv_b_proj(attn.kv_a_layernorm(kv_latent))
        kv = kv.view(batch, steps, self.heads, self.nope + self.value_dim).transpose(1, 2)
        k_nope, values = torch.split(kv, [self.nope, self.value_dim], dim=-1)
        keys = torch.cat((k_nope, k_rot.expand(-1, self.heads, -1, -1)), dim=-1)
        query = torch.cat((q_pass, q_rot), dim=-1)
        if attend.prefill_rows is not None:
            self.cache.write_prefill(layer, attend.prefill_rows, keys, values)
        else:
            self.cache.write_step(layer, attend.rows, attend.positions[:, 0], keys, values)
            keys, values = self.cache.read(layer, batch, attend.key_len)
            if attend.back is not None:
                query = query.index_select(0, attend.back)
        out = F.scaled_dot_product_attention(query, keys, values, attn_mask=attend.mask, scale=attn.scaling)
        if attend.back is not None:
            out = out.index_select(0, attend.rows)
        return attn.o_proj(out.transpose(1, 2).reshape(batch, steps, self.heads * self.value_dim))
