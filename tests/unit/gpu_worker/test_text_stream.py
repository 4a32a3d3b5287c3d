"""Deltas are final text: stop sequences end the output (not part of it), partial characters wait."""
from services.gpu_worker.engines.torch_engine.text_stream import TextStream


def byte_decode(ids):
    return bytes(ids).decode("utf-8", errors="replace")


def feed(stream, text):
    return [stream.push(b) for b in text.encode()]


def test_a_stop_sequence_split_over_tokens_ends_the_output_without_itself():
    stream = TextStream(byte_decode, ["END"])
    deltas = feed(stream, "hello EN") + feed(stream, "D and more")
    assert stream.stopped
    assert "".join(deltas) + stream.finish() == "hello "
    assert stream.text == "hello "


def test_text_that_could_begin_a_stop_is_held_back_until_it_cannot():
    stream = TextStream(byte_decode, ["END"])
    assert "".join(feed(stream, "aE")) == "a"
    assert stream.push(ord("x")) == "Ex"


def test_a_multibyte_character_is_emitted_whole():
    stream = TextStream(byte_decode, [])
    deltas = feed(stream, "é")
    assert deltas == ["", "é"]
