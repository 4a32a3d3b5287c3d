"""A Range position no file can have is the caller's mistake: a 400, never a 500 (issue 15, finding 7)."""
import pytest

HUGE = "9" * 5000  # past int()'s 4300-digit limit: this raised ValueError inside the handler


@pytest.mark.parametrize("header", [f"bytes={HUGE}-", f"bytes=0-{HUGE}", f"bytes=-{HUGE}", f"bytes=1{'0' * 19}-"])
async def test_a_range_with_a_huge_position_is_a_400(svc, header):
    created = await svc.sdk().files.create(file=("a.bin", b"0123456789"), purpose="lora")
    resp = await svc.http.get(f"/v1/files/{created.id}/content", headers={**svc.auth(), "Range": header})
    assert resp.status == 400
    error = (await resp.json())["error"]
    assert error["type"] == "invalid_request_error" and error["code"] == "invalid_range"


async def test_the_largest_position_still_answers_416(svc):
    created = await svc.sdk().files.create(file=("a.bin", b"0123456789"), purpose="lora")
    resp = await svc.http.get(f"/v1/files/{created.id}/content",
                              headers={**svc.auth(), "Range": f"bytes={'9' * 19}-"})
    assert resp.status == 416
