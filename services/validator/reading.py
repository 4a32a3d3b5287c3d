"""Reads from the blob store: the config (capped) and the weights' header only, by ranged reads."""
from __future__ import annotations

from dataclasses import dataclass

from services.validator import codes
from services.validator.config_rules import MAX_CONFIG_BYTES
from services.validator.metrics import BYTES_READ
from shared.safetensors_header import HeaderProblem, fetch_header_bytes
from shared.stores.blobs import BlobNotFound, BlobStore


class MissingBlob(Exception):
    def __init__(self, code: str, key: str):
        super().__init__(f"{key} is not in the blob store")
        self.code = code


@dataclass(frozen=True)
class FetchedHeader:
    raw: bytes | HeaderProblem  # the header's bytes, or why they could not be read
    file_size: int


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
