"""file-ingest's pure rules: ranges, filenames, purposes, ids, upload states and part lists."""
from __future__ import annotations

import pytest

from services.file_ingest.domain.filenames import InvalidFilename, clean_filename
from services.file_ingest.domain.files import UnknownPurpose, check_purpose
from services.file_ingest.domain.ids import new_file_id, new_part_id, new_upload_id
from services.file_ingest.domain.ranges import ByteRange, RangeNotSatisfiable, parse_range
from services.file_ingest.domain.uploads import (
    CompletionRefused,
    PartRecord,
    UploadNotPending,
    UploadRecord,
    check_accepts_work,
    select_parts,
)


@pytest.mark.parametrize(("header", "expected"), [
    (None, None), ("", None), ("bytes=0-0", ByteRange(0, 1)), ("bytes=5-", ByteRange(5, 5)),
    ("bytes=-3", ByteRange(7, 3)), ("bytes=-30", ByteRange(0, 10)), ("bytes=2-100", ByteRange(2, 8)),
    ("bytes=5-2", None), ("bytes=0-1,4-5", None), ("items=0-1", None), ("bytes=-", None),
])
def test_parse_range(header, expected):
    assert parse_range(header, 10) == expected


@pytest.mark.parametrize("header", ["bytes=10-", "bytes=10-12", "bytes=-0"])
def test_unsatisfiable_ranges(header):
    with pytest.raises(RangeNotSatisfiable):
        parse_range(header, 10)


def test_content_range_header():
    assert ByteRange(7, 3).content_range(10) == "bytes 7-9/10"


@pytest.mark.parametrize(("raw", "clean"), [
    (None, "file"), ("a.bin", "a.bin"), ("../../etc/passwd", "passwd"), ("C:\\fakepath\\x.json", "x.json"),
    ("  spaced name.txt ", "spaced name.txt"), ("ünïcode.safetensors", "ünïcode.safetensors"),
])
def test_filenames_keep_only_the_last_segment(raw, clean):
    assert clean_filename(raw) == clean


@pytest.mark.parametrize("raw", ["a\nb", "a\x00b", "bell\x07", "rtl\u202eexe.txt", "dir/", "..", "x" * 256])
def test_bad_filenames_are_refused(raw):
    with pytest.raises(InvalidFilename):
        clean_filename(raw)


def test_purposes():
    assert check_purpose("lora") == "lora" and check_purpose("fine-tune") == "fine-tune"
    for bad in (None, "", "LoRA", "weights"):
        with pytest.raises(UnknownPurpose):
            check_purpose(bad)


def test_ids_have_their_prefix_and_sort_by_creation_time():
    assert new_file_id().startswith("file-") and new_upload_id().startswith("upload_")
    assert new_part_id().startswith("part_")
    ids = [new_file_id(now_ms=t) for t in (1, 2, 1_000, 10**12, 2**47)]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)


def upload(**kw) -> UploadRecord:
    parts = [PartRecord(id=f"part_{i}", bytes=4, object_key=f"k/{i}", created_at=0) for i in range(3)]
    values = {"id": "upload_1", "org_id": "o", "filename": "f", "bytes": 12, "mime_type": "x/y", "purpose": "lora",
                  "created_at": 0, "expires_at": 100, "parts": parts, "parts_bytes": 12}
    return UploadRecord(**{**values, **kw})


def test_select_parts_keeps_the_callers_order():
    chosen = select_parts(upload(), ["part_2", "part_0", "part_1"])
    assert [p.id for p in chosen] == ["part_2", "part_0", "part_1"]


def test_select_parts_reports_every_problem_at_once():
    with pytest.raises(CompletionRefused) as refused:
        select_parts(upload(), ["part_0", "part_9", "part_0", "part_x"])
    assert len(refused.value.problems) == 2
    assert "part_9, part_x" in str(refused.value) and "more than once: part_0" in str(refused.value)


def test_select_parts_checks_the_byte_total():
    with pytest.raises(CompletionRefused, match="hold 8 bytes"):
        select_parts(upload(), ["part_0", "part_1"])


def test_upload_states():
    assert upload().effective_status(now=99) == "pending"
    assert upload().effective_status(now=100) == "expired"
    assert upload(status="cancelled").effective_status(now=0) == "cancelled"
    check_accepts_work(upload(), now=50)
    for closed, now in ((upload(), 100), (upload(status="completed"), 0), (upload(completing_until=60), 50)):
        with pytest.raises(UploadNotPending):
            check_accepts_work(closed, now)
    check_accepts_work(upload(completing_until=40), now=50)  # a crashed completion's lease ran out
