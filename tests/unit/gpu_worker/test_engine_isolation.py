"""One request the engine cannot serve is refused alone: the other rows of the same steps finish as if alone."""
from services.gpu_worker.engines.torch_engine.sampling import SamplingSpec
from services.gpu_worker.engines.torch_engine.sequence import GenerationRequest
from tests.unit.gpu_worker.test_engine_scheduling import make_engine, request, run

SEED_PAST_64_BITS = 2**64


def alone(text, max_tokens):
    engine, _ = make_engine(num_slots=2, max_batch=4)
    return run(engine, [request("alone", text, max_tokens=max_tokens)])["alone"]


def bad_seed(request_id, seed=SEED_PAST_64_BITS):
    good = request(request_id, "roll the dice", max_tokens=8)
    return GenerationRequest(request_id, good.prompt, max_tokens=8, sampling=SamplingSpec(temperature=1.0, seed=seed))


def test_a_seed_past_64_bits_is_refused_alone_while_other_rows_run_and_finish():
    engine, _ = make_engine(num_slots=2, max_batch=4)
    engine.submit(request("running", "a request already decoding", max_tokens=10))
    first = engine.step()
    assert not any(u.finished for u in first)  # it is mid-generation when the bad request arrives
    finals = run(engine, [bad_seed("bad"), request("beside", "arrived with the bad one", max_tokens=6)])
    assert finals["bad"].error_code == "invalid_request" and "seed" in finals["bad"].error_message
    assert finals["running"].error_code is None and finals["beside"].error_code is None
    # rows that shared every step with the bad request give exactly the output they give alone
    assert finals["beside"].output_text == alone("arrived with the bad one", 6).output_text
    assert finals["running"].completion_tokens == 10


def test_every_seed_in_the_64_bit_signed_range_samples():
    engine, _ = make_engine(num_slots=2, max_batch=4)
    finals = run(engine, [bad_seed("low", -(2**63)), bad_seed("high", 2**63 - 1)])
    assert finals["low"].error_code is None and finals["high"].error_code is None


def test_a_request_whose_adapter_cannot_be_placed_fails_alone(weights):
    engine, _ = make_engine(num_slots=2, max_batch=4)
    orphan = request("orphan", "hello", max_tokens=4)
    orphan.adapter_key = "lora-whose-weights-never-came"  # names an adapter, carries no weights
    finals = run(engine, [orphan, request("fine", "hello", "peft_all_linear", weights, max_tokens=5)])
    assert finals["orphan"].error_code == "internal_error"
    assert finals["fine"].error_code is None and finals["fine"].completion_tokens == 5
    again = run(engine, [request("after", "hello", "peft_all_linear", weights, max_tokens=5)])["after"]
    assert again.output_text == finals["fine"].output_text  # the engine is intact afterwards
