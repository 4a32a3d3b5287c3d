"""Reads from the blob store: the config (capped) and the weights' header only, by ranged reads.

A header can cost no more than the model's largest legal adapter: its size, entries, JSON values
and nesting are capped from the catalogue (`header_limits`), and a large one holds one of a few
slots from reading its bytes until its validation ends, so concurrent jobs cannot stack them up.
"""
from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

from services.validator import codes
from services.validator.config_rules import MAX_CONFIG_BYTES
from services.validator.keys import BASE_LAYER, SUFFIX_CHARS
from services.validator.metrics import BYTES_READ
from shared.catalogue.catalogue import ModelEntry
from shared.catalogue.shapes import longest_path_chars
from shared.safetensors_header import (
    HeaderLimits,
    HeaderProblem,
    SafetensorsHeader,
    check_structure,
    decode_utf8,
    fetch_header_body,
    fetch_header_start,
    from_document,
    load_json,
)
from shared.stores.blobs import BlobNotFound, BlobStore

# A header past this size is large: parsing and checking it holds ~10x its size for a second or so
# (a full-size Kimi-K2.6 adapter's 23 MB header, ~250 MiB). At most this many are held at once.
LARGE_HEADER_BYTES = 1 << 20
LARGE_HEADERS_AT_ONCE = 2


class MissingBlob(Exception):
    def __init__(self, code: str, key: str):
        super().__init__(f"{key} is not in the blob store")
        self.code = code


def header_limits(model: ModelEntry) -> HeaderLimits:
    """What the header of `model`'s largest legal adapter can hold: lora_A and lora_B for every
    module (both experts layouts counted), each named by the longest key prefix and module path."""
    longest_name = (max(len(prefix) for prefix in model.key_prefixes) + longest_path_chars(model.shapes)
                    + len(BASE_LAYER) + SUFFIX_CHARS)
    return HeaderLimits.for_adapter(2 * model.shapes.count(), longest_name, of=f"a {model.id} adapter")


@dataclass
class FetchedHeader:
    raw: bytes | HeaderProblem | None  # the header's bytes, or why they could not be read; None once parsed
    file_size: int
    limits: HeaderLimits

    def parse(self) -> SafetensorsHeader:
        """Parse once, letting each 20 MB stage go as soon as the next is built: the bytes once
        decoded, the text once loaded (the parsed JSON is emptied as the tensors are read)."""
        raw, self.raw = self.raw, None
        if raw is None:
            raise RuntimeError("the header was parsed already")
        if isinstance(raw, HeaderProblem):
            return SafetensorsHeader(problems=[raw])
        header_length = len(raw)
        text = check_structure(raw, self.limits) or decode_utf8(raw)
        del raw
        document = load_json(text) if isinstance(text, str) else text
        del text
        return from_document(document, header_length, self.file_size, self.limits)


async def read_config_bytes(blobs: BlobStore, key: str) -> bytes:
    """At most one byte past the cap: enough for the config rules to tell it is too large."""
    try:
        data = await blobs.get_range(key, 0, MAX_CONFIG_BYTES + 1)
    except BlobNotFound:
        raise MissingBlob(codes.CONFIG_MISSING, key) from None
    BYTES_READ.inc(len(data))
    return data


@contextlib.asynccontextmanager
async def weights_header(blobs: BlobStore, key: str, limits: HeaderLimits,
                         large_headers: asyncio.Semaphore) -> AsyncIterator[FetchedHeader]:
    """The weights' header, for the duration of the `async with`; a large one holds a slot of
    `large_headers` from before its bytes are read until the block ends."""
    async def read_range(offset: int, length: int) -> bytes:
        try:
            data = await blobs.get_range(key, offset, length)
        except BlobNotFound:
            raise MissingBlob(codes.WEIGHTS_MISSING, key) from None
        BYTES_READ.inc(len(data))
        return data

    try:
        size = (await blobs.stat(key)).size
    except BlobNotFound:
        raise MissingBlob(codes.WEIGHTS_MISSING, key) from None
    start = await fetch_header_start(read_range, size, limits)
    if isinstance(start, HeaderProblem):
        yield FetchedHeader(start, size, limits)
        return
    async with large_headers if start.length > LARGE_HEADER_BYTES else contextlib.nullcontext():
        yield FetchedHeader(await fetch_header_body(read_range, start), size, limits)
