"""Continuous batching across adapters: refill as sequences finish, slots evicted and reloaded, cancels."""

from services.gpu_worker.engines.torch_engine.engine import EngineObserver
from services.gpu_worker.engines.torch_engine.model_host import EngineOptions, host_engine
from services.gpu_worker.engines.torch_engine.sampling import SamplingSpec
from services.gpu_worker.engines.torch_engine.sequence import GenerationRequest
from services.gpu_worker.models.tiny_model import build_model
from services.gpu_worker.models.tokenizer import build_tokenizer

GREEDY = SamplingSpec(temperature=0.0)
TOKENIZER = build_tokenizer()


class BatchSizes(EngineObserver):
    def __init__(self):
        self.sizes = []

    def stepped(self, batch_size, new_tokens, seconds):
        self.sizes.append(batch_size)


def make_engine(num_slots=2, max_batch=3, max_len=128):
    observer = BatchSizes()
    engine = host_engine(build_model(), TOKENIZER, EngineOptions(num_slots=num_slots, max_batch=max_batch,
                                                                 max_len=max_len), observer)
    return engine, observer


def request(request_id, text, adapter=None, weights=None, max_tokens=12, **kwargs):
    prompt = TOKENIZER.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True,
                                           tokenize=True, return_dict=False)
    return GenerationRequest(request_id, list(prompt), max_tokens=max_tokens, sampling=GREEDY,
                             adapter_key=adapter, adapter=weights[adapter] if adapter else None, **kwargs)


def run(engine, requests, steps=500, finished_at=None):
    for r in requests:
        engine.submit(r)
    finals = {}
    for step in range(steps):
        if not engine.has_work():
            break
        for update in engine.step():
            if update.finished:
                finals[update.request_id] = update
                if finished_at is not None:
                    finished_at[update.request_id] = step
    return finals


def test_many_requests_over_few_rows_and_slots_each_give_their_output_alone(weights):
    layouts = ["peft_all_linear", "explicit_linears", "per_expert", None]
    requests = [request(f"r{i}", f"prompt number {i}", layouts[i % 4], weights, max_tokens=6 + i) for i in range(9)]
    engine, observer = make_engine(num_slots=2, max_batch=3)
    together = run(engine, requests)
    assert set(together) == {r.request_id for r in requests}
    assert max(observer.sizes) == 3 and observer.sizes.count(3) > len(observer.sizes) // 2  # refilled, kept full
    single, _ = make_engine(num_slots=2, max_batch=1)
    for r in requests:
        alone = run(single, [request(r.request_id, f"prompt number {r.request_id[1:]}", r.adapter_key, weights,
                                     r.max_tokens)])
        assert together[r.request_id].output_text == alone[r.request_id].output_text
        assert together[r.request_id].completion_tokens == alone[r.request_id].completion_tokens


def test_an_evicted_adapter_reloads_to_identical_outputs(weights):
    engine, _ = make_engine(num_slots=1, max_batch=1)
    first = run(engine, [request("a1", "hello", "peft_all_linear", weights, max_tokens=16)])["a1"]
    run(engine, [request("b", "hello", "per_expert", weights, max_tokens=4)])  # evicts the first adapter
    assert engine.slots.slot_of("peft_all_linear") is None
    again = run(engine, [request("a2", "hello", "peft_all_linear", weights, max_tokens=16)])["a2"]
    assert again.output_text == first.output_text and again.completion_tokens == first.completion_tokens == 16


def test_a_request_waits_while_every_slot_serves_running_sequences(weights):
    engine, _ = make_engine(num_slots=1, max_batch=3)
    finished_at = {}
    finals = run(engine, [request("x", "one", "peft_all_linear", weights, max_tokens=8),
                          request("y", "two", "per_expert", weights, max_tokens=3),
                          request("z", "three", None, weights, max_tokens=3)], finished_at=finished_at)
    assert set(finals) == {"x", "y", "z"} and not any(u.error_code for u in finals.values())
    # z needs no slot and runs beside x; y waits for x's slot
    assert finished_at["z"] < finished_at["x"] < finished_at["y"]


def test_cancel_stops_a_running_request_and_drops_a_queued_one(weights):
    engine, _ = make_engine(num_slots=2, max_batch=1)
    engine.submit(request("running", "hi", None, weights, max_tokens=50))
    engine.submit(request("queued", "hi", None, weights, max_tokens=50))
    engine.step()
    engine.step()
    engine.cancel("running")
    engine.cancel("queued")
    finals = run(engine, [])
    assert finals["running"].finish_reason == "cancelled" and 0 < finals["running"].completion_tokens < 50
    assert finals["queued"].finish_reason == "cancelled" and finals["queued"].completion_tokens == 0
    assert not engine.has_work() and engine.runner.cache.rows_in_use == 0


def test_a_prompt_longer_than_the_context_is_refused():
    engine, _ = make_engine(max_len=16)
    final = run(engine, [request("long", "x" * 40, None, {})])["long"]
    assert final.error_code == "context_length_exceeded"


def test_stop_sequences_end_the_output(weights):
    engine, _ = make_engine()
    plain = run(engine, [request("p", "hello", None, weights, max_tokens=12)])["p"].output_text
    stop = plain[3:5]
    stopped = run(engine, [request("s", "hello", None, weights, max_tokens=12, stop=[stop])])["s"]
    assert stopped.finish_reason == "stop" and stopped.output_text == plain[: plain.index(stop)]


def test_an_adapter_that_overflows_the_model_fails_its_request_with_output_nonfinite(weights):
    import torch

    from services.gpu_worker.adapters.adapter_weights import AdapterWeights, LoraFactors

    huge = AdapterWeights({"layers.0.self_attn.o_proj": LoraFactors(torch.full((1, 64), 1e20),
                                                                    torch.full((64, 1), 1e20))})
    engine, _ = make_engine()
    finals = run(engine, [GenerationRequest("boom", [256, 260, 104, 105, 262, 261], 5, GREEDY, adapter_key="huge",
                                            adapter=huge), request("fine", "hi", None, weights, max_tokens=5)])
    assert finals["boom"].error_code == "output_nonfinite"
    assert finals["fine"].error_code is None and finals["fine"].completion_tokens == 5
