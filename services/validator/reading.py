"""Reads from the blob store: the config (capped) and the weights' header only, by ranged reads."""
from __future__ import annotations

from dataclasses import dataclass

from services.validator import codes
from services.validator.config_rules import MAX_CONFIG_BYTES
from services.validator.metrics import BYTES_READ
from shared.safetensors_header import (
    HeaderProblem,
    SafetensorsHeader,
    decode_utf8,
    fetch_header_bytes,
    from_document,
    load_json,
)
from shared.stores.blobs import BlobNotFound, BlobStore


class MissingBlob(Exception):
    def __init__(self, code: str, key: str):
        super().__init__(f"{key} is not in the blob store")
        self.code = code


@dataclass
class FetchedHeader:
    raw: bytes | HeaderProblem | None  # the header's bytes, or why they could not be read; None once parsed
    file_size: int

    def parse(self) -> SafetensorsHeader:
        """Parse once, letting each 20 MB stage go as soon as the next is built: the bytes once
        decoded, the text once loaded (the parsed JSON is emptied as the tensors are read)."""
        raw, self.raw = self.raw, None
        if raw is None:
            raise RuntimeError("the header was parsed already")
        if isinstance(raw, HeaderProblem):
            return SafetensorsHeader(problems=[raw])
        header_length = len(raw)
        text = decode_utf8(raw)
        del raw
        document = load_json(text) if isinstance(text, str) else text
        del text
        return from_document(document, header_length, self.file_size)


async def read_config_bytes(blobs: BlobStore, key: str) -> bytes:
    """At most one byte past the cap: enough for the config rules to tell it is too large."""
    try:
        data = await blobs.get_range(key, 0, MAX_CONFIG_BYTES + 1)
    except BlobNotFound:
        raise MissingBlob(codes.CONFIG_MISSING, key) from None
    BYTES_READ.inc(len(data))
    return data


async def read_weights_header(blobs: BlobStore, key: str) -> FetchedHeader:
    try:
        size = (await blobs.stat(key)).size

        async def read_range(offset: int, length: int) -> bytes:
            data = await blobs.get_range(key, offset, length)
            BYTES_READ.inc(len(data))
            return data

        return FetchedHeader(await fetch_header_bytes(read_range, size), size)
    except BlobNotFound:
        raise MissingBlob(codes.WEIGHTS_MISSING, key) from None
