"""Blob store on a local directory: the embedded default.

Objects live under `<root>/objects/<key>` (a key's '/' makes sub-directories). Every write
goes to a file under `<root>/incoming/` first and is renamed into place only when complete,
so an aborted put or compose leaves nothing under the key and readers never see half a file;
the file is fsynced before the rename and its directory after, so a stored object survives a crash.
Objects are readable by their owner only (files 0600, directories 0700).
Blocking file I/O runs in the default executor, one chunk per call.
"""
from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import uuid
from collections.abc import AsyncIterable, AsyncIterator
from pathlib import Path

from shared.logging import get_logger
from shared.stores.blobs import BlobInfo, BlobNotFound, BlobStore, BlobTooLarge, PutResult
from shared.stores.keys import validate_key
from shared.stores.private_files import DIR_MODE, FILE_MODE, fsync_dir, make_dir

log = get_logger(__name__)

COPY_CHUNK = 8 * 1024 * 1024


class _Incoming:
    """A file being written under incoming/, hashed on the way, renamed into place on commit."""

    def __init__(self, incoming_dir: Path):
        make_dir(incoming_dir)
        self.path = incoming_dir / uuid.uuid4().hex
        self.size = 0
        self._hasher = hashlib.sha256()
        descriptor = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
        self._file = open(descriptor, "wb")  # noqa: SIM115 - closed by commit() or discard()

    def write(self, chunk: bytes) -> None:
        self._hasher.update(chunk)
        self._file.write(chunk)
        self.size += len(chunk)

    def copy_from(self, source: Path) -> None:
        with open(source, "rb") as src:
            while block := src.read(COPY_CHUNK):
                self.write(block)

    def commit(self, target: Path) -> None:
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        # a concurrent delete may prune the freshly made parent directory; try once more
        for attempt in (1, 2):
            try:
                make_dir(target.parent)
                os.replace(self.path, target)
                fsync_dir(target.parent)
                return
            except FileNotFoundError:
                if attempt == 2:
                    raise

    def discard(self) -> None:
        self._file.close()
        self.path.unlink(missing_ok=True)

    @property
    def sha256(self) -> str:
        return self._hasher.hexdigest()


def _check_range(offset: int, length: int | None) -> None:
    if offset < 0 or (length is not None and length < 0):
        raise ValueError("offset and length must not be negative")


class LocalBlobStore(BlobStore):
    def __init__(self, root: Path | str):
        self._root = Path(root)
        self._objects = self._root / "objects"
        self._incoming = self._root / "incoming"

    async def start(self) -> None:
        await asyncio.to_thread(self._prepare_dirs)

    def _prepare_dirs(self) -> None:
        make_dir(self._objects)
        self._root.chmod(DIR_MODE)  # data dirs made by earlier versions were 0755
        # whatever is in incoming/ was left by a process that died mid-write: never committed
        shutil.rmtree(self._incoming, ignore_errors=True)
        make_dir(self._incoming)

    def _path(self, key: str) -> Path:
        return self._objects / validate_key(key)

    async def put_stream(self, key: str, chunks: AsyncIterable[bytes], *,
                         max_bytes: int | None = None) -> PutResult:
        target = self._path(key)
        incoming = await asyncio.to_thread(_Incoming, self._incoming)
        try:
            async for chunk in chunks:
                if max_bytes is not None and incoming.size + len(chunk) > max_bytes:
                    raise BlobTooLarge(f"{key}: more than {max_bytes} bytes")
                await asyncio.to_thread(incoming.write, chunk)
            await asyncio.to_thread(incoming.commit, target)
        except BaseException:
            # synchronous on purpose: it must run even when the task is being cancelled
            incoming.discard()
            raise
        return PutResult(key=key, size=incoming.size, sha256=incoming.sha256)

    async def get_range(self, key: str, offset: int = 0, length: int | None = None) -> bytes:
        _check_range(offset, length)
        path = self._path(key)
        return await asyncio.to_thread(self._read, path, key, offset, length)

    @staticmethod
    def _read(path: Path, key: str, offset: int, length: int | None) -> bytes:
        try:
            with open(path, "rb") as file:
                file.seek(offset)
                return file.read(-1 if length is None else length)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise BlobNotFound(key) from None

    async def iter_range(self, key: str, offset: int = 0, length: int | None = None,
                         chunk_size: int = 1 << 20) -> AsyncIterator[bytes]:
        _check_range(offset, length)
        path = self._path(key)
        file = await asyncio.to_thread(self._open_at, path, key, offset)
        try:
            remaining = length
            while remaining is None or remaining > 0:
                want = chunk_size if remaining is None else min(chunk_size, remaining)
                block = await asyncio.to_thread(file.read, want)
                if not block:
                    return
                if remaining is not None:
                    remaining -= len(block)
                yield block
        finally:
            file.close()

    @staticmethod
    def _open_at(path: Path, key: str, offset: int):
        try:
            file = open(path, "rb")  # noqa: SIM115 - the caller closes it
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise BlobNotFound(key) from None
        file.seek(offset)
        return file

    async def stat(self, key: str) -> BlobInfo:
        path = self._path(key)
        return await asyncio.to_thread(self._stat, path, key)

    @staticmethod
    def _stat(path: Path, key: str) -> BlobInfo:
        try:
            if path.is_file():
                return BlobInfo(key=key, size=path.stat().st_size)
        except (FileNotFoundError, NotADirectoryError):
            pass
        raise BlobNotFound(key)

    async def compose(self, key: str, source_keys: list[str]) -> BlobInfo:
        if not source_keys:
            raise ValueError("compose needs at least one source")
        target = self._path(key)
        sources = [(self._path(source), source) for source in source_keys]
        size = await asyncio.to_thread(self._concatenate, target, sources)
        return BlobInfo(key=key, size=size)

    def _concatenate(self, target: Path, sources: list[tuple[Path, str]]) -> int:
        incoming = _Incoming(self._incoming)
        try:
            for path, source_key in sources:
                if not path.is_file():
                    raise BlobNotFound(source_key)
                incoming.copy_from(path)
            incoming.commit(target)
        except BaseException:
            incoming.discard()
            raise
        return incoming.size

    async def delete(self, key: str) -> None:
        path = self._path(key)
        await asyncio.to_thread(self._remove, path)

    def _remove(self, path: Path) -> None:
        try:
            path.unlink()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return
        # prune the directories the key made, so the tree does not grow without bound
        for parent in path.parents:
            if parent == self._objects or self._objects not in parent.parents:
                break
            try:
                parent.rmdir()
            except OSError:
                break

    async def keys(self, prefix: str = "") -> list[str]:
        """Every stored key that starts with `prefix` (the embedded start-up's orphan sweep)."""
        return await asyncio.to_thread(self._keys, prefix)

    def _keys(self, prefix: str) -> list[str]:
        found = []
        for directory, _, files in os.walk(self._objects):
            base = Path(directory).relative_to(self._objects).as_posix()
            for name in files:
                key = name if base == "." else f"{base}/{name}"
                if key.startswith(prefix):
                    found.append(key)
        return sorted(found)

    async def download_to(self, key: str, path: str) -> None:
        source = self._path(key)
        await asyncio.to_thread(self._copy_out, source, key, Path(path))

    @staticmethod
    def _copy_out(source: Path, key: str, destination: Path) -> None:
        if not source.is_file():
            raise BlobNotFound(key)
        destination.parent.mkdir(parents=True, exist_ok=True)
        partial = destination.with_name(f".{destination.name}.{uuid.uuid4().hex}.part")
        try:
            shutil.copyfile(source, partial)
            os.replace(partial, destination)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise

    async def ready(self) -> bool:
        return self._objects.is_dir() and os.access(self._objects, os.W_OK)
