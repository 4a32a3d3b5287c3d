"""A weights header can only cost the validator what the model's largest legal adapter would: its
size, entry count, JSON values and nesting are bounded from the catalogue before anything is built,
and only a few large headers are held at once."""
import asyncio
import json
import struct
import tracemalloc

from services.validator import codes
from services.validator.handler import Validator, validate_job
from services.validator.reading import LARGE_HEADER_BYTES, LARGE_HEADERS_AT_ONCE, header_limits
from shared import safetensors_header as sh
from shared.catalogue.catalogue import load_catalogue
from shared.stores.local_blobs import LocalBlobStore
from tests.integration.validator.conftest import CountingBlobs, job
from tests.integration.validator.test_kimi_full_size import full_size_shapes
from tests.unit.validator.adapters import KIMI, TINY, kimi_config, recipe, safetensors_bytes

KIMI_JOB = {"model": "moonshotai/Kimi-K2.6", "slug": "kimi-k2-6"}
CONFIG, WEIGHTS = "orgs/acme/files/file-cfg", "orgs/acme/files/file-w"


def kimi_validator(tmp_path, header: bytes, declared: int | None = None, blobs_type=CountingBlobs):
    """A validator over an on-disk store holding a Kimi config and a weights file that starts with
    `header` (declared length `declared`, default its own), sparse up to the declared end."""
    root = tmp_path / "blobs"
    (root / "objects" / CONFIG).parent.mkdir(parents=True, exist_ok=True)
    (root / "objects" / CONFIG).write_bytes(kimi_config())
    declared = len(header) if declared is None else declared
    with open(root / "objects" / WEIGHTS, "wb") as weights:
        weights.write(struct.pack("<Q", declared) + header)
        weights.truncate(8 + declared)
    blobs = blobs_type(LocalBlobStore(root))
    return Validator(bus=None, blobs=blobs, catalogue=load_catalogue(), source="test"), blobs


async def validate_measuring(validator, validation_id: str = "val-1"):
    """The problems, and the most memory Python held at once meanwhile (MiB)."""
    tracemalloc.start()
    try:
        problems = await validate_job(validator, job(validation_id, **KIMI_JOB))
        return problems, tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


def test_the_largest_adapters_of_each_model_fit_its_caps_with_little_room_to_spare():
    kimi = header_limits(load_catalogue().get(KIMI))
    raw = safetensors_bytes(full_size_shapes(), data=False)[0][8:]  # rank 32 on every module: 139,216 tensors
    assert len(raw) <= kimi.max_bytes < 2 * len(raw) and len(full_size_shapes()) < kimi.max_entries
    assert sh.check_structure(raw, kimi) is None
    tiny = header_limits(load_catalogue().get(TINY))
    assert sh.parse_bytes(recipe("all_linear_max_rank").weights, tiny).ok


async def test_a_header_over_the_models_cap_is_refused_without_reading_it(tmp_path):
    # the reported attack: a 50 MiB header of empty entries (a Kimi-K2.6 rank-32 header is 23 MB)
    validator, blobs = kimi_validator(tmp_path, b"{", declared=50 * 2**20)
    problems = await validate_job(validator, job(**KIMI_JOB))
    assert problems.codes() == [sh.HEADER_TOO_LARGE]
    assert "Kimi-K2.6 adapter can need" in problems.result_message()
    assert blobs.bytes_read < len(kimi_config()) + 64


async def test_more_entries_than_the_model_has_tensors_are_refused_before_parsing(tmp_path):
    header = json.dumps({f"t{i}": {} for i in range(300_000)}, separators=(",", ":")).encode()  # 3.5 MB
    validator, _ = kimi_validator(tmp_path, header)
    problems, peak_mib = await validate_measuring(validator)
    assert problems.codes() == [sh.HEADER_TOO_LARGE] and "entries" in problems.result_message()
    assert peak_mib < 5 * len(header) / 2**20  # the bytes and scans of them; not 300 thousand dicts


async def test_more_json_values_than_the_models_adapters_hold_are_refused_before_parsing(tmp_path):
    header = b'{"t":[' + b"[]," * 3_000_000 + b"[]]}"  # 9 MB: 3 million lists
    validator, _ = kimi_validator(tmp_path, header)
    problems, peak_mib = await validate_measuring(validator)
    assert problems.codes() == [sh.HEADER_TOO_LARGE] and "JSON values" in problems.result_message()
    assert peak_mib < 5 * len(header) / 2**20


async def test_more_strings_than_the_models_adapters_hold_are_refused_before_parsing(tmp_path):
    pairs = b",".join(b'"k%d":"v%d"' % (i, i) for i in range(1_000_000))
    header = b'{"__metadata__":{' + pairs + b"}}"  # 19 MB of metadata: 2 million strings
    validator, _ = kimi_validator(tmp_path, header)
    problems, peak_mib = await validate_measuring(validator)
    assert problems.codes() == [sh.HEADER_TOO_LARGE] and "strings" in problems.result_message()
    assert peak_mib < 5 * len(header) / 2**20


async def test_a_header_nested_deeper_than_a_safetensors_header_is_not_json(tmp_path):
    for nested in ({"t": {"dtype": {"deeper": [0]}}}, {"t": [[[[[[[[0]]]]]]]]}):
        validator, _ = kimi_validator(tmp_path, json.dumps(nested).encode())
        problems = await validate_job(validator, job(**KIMI_JOB))
        assert problems.codes() == [sh.HEADER_NOT_JSON] and "nest" in problems.result_message()


async def test_brackets_and_commas_inside_strings_are_not_structure(tmp_path):
    # a metadata string full of what looks like JSON structure is still one value
    entry = {"dtype": "BF16", "shape": [1, 1], "data_offsets": [0, 2]}
    header = json.dumps({"__metadata__": {"note": "[{,:" * 600_000}, "t.lora_A.weight": entry}).encode()
    validator, _ = kimi_validator(tmp_path, header)
    problems = await validate_job(validator, job(**KIMI_JOB))
    assert sh.HEADER_TOO_LARGE not in problems.codes() and sh.HEADER_NOT_JSON not in problems.codes()


class GatedBlobs(CountingBlobs):
    """Holds every read of a header's body until released, counting how many wait at once."""

    def __init__(self, inner):
        super().__init__(inner)
        self.release, self.waiting, self.most_waiting = asyncio.Event(), 0, 0

    async def get_range(self, key, offset=0, length=None):
        if key != WEIGHTS or offset == 0:
            return await super().get_range(key, offset, length)
        self.waiting += 1
        self.most_waiting = max(self.most_waiting, self.waiting)
        await self.release.wait()
        self.waiting -= 1
        return await super().get_range(key, offset, length)


async def test_only_a_few_large_headers_are_read_and_parsed_at_once(tmp_path):
    header = b"{" + b" " * (LARGE_HEADER_BYTES + 1) + b"}"
    validator, blobs = kimi_validator(tmp_path, header, blobs_type=GatedBlobs)
    jobs = [asyncio.ensure_future(validate_job(validator, job(f"val-{i}", **KIMI_JOB)))
            for i in range(LARGE_HEADERS_AT_ONCE + 3)]
    for _ in range(100):  # let every job get as far as it may
        await asyncio.sleep(0.01)
    assert blobs.most_waiting == LARGE_HEADERS_AT_ONCE
    blobs.release.set()
    results = await asyncio.gather(*jobs)
    assert all(problems.codes() == [codes.ADAPTER_EMPTY] for problems in results)
    assert blobs.most_waiting == LARGE_HEADERS_AT_ONCE
