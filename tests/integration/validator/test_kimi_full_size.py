"""A full-size Kimi-K2.6 rank-32 adapter (every module, per-expert keys: ~140 thousand tensors, ~41 GB)
as a sparse file in the on-disk store: validated from its header alone."""
import functools

from services.validator import codes
from shared.contracts.messages import RunGpuValidation
from tests.integration.validator.conftest import job
from tests.unit.validator.adapters import kimi_config, kimi_shapes, safetensors_bytes

KIMI_JOB = {"model": "moonshotai/Kimi-K2.6", "slug": "kimi-k2-6"}
WRONG = "base_model.model.language_model.model.layers.42.mlp.experts.311.up_proj.lora_A.weight"


@functools.cache
def full_size_shapes() -> dict:
    return kimi_shapes(rank=32)


def write_sparse(service, key: str, shapes: dict) -> int:
    header, file_size = safetensors_bytes(shapes, data=False)
    path = service.root / "objects" / key
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as file:
        file.write(header)
        file.truncate(file_size)  # a hole: no disk used for the 41 GB of weights
    return file_size


async def test_full_size_adapter_passes_reading_a_sliver_of_the_file(make_service):
    from shared.settings import Settings

    # where Kimi's 8-GPU pool is deployed (prod sets it): the adapter goes on to the pool
    service = await make_service(settings=Settings(deployed_models={"moonshotai/Kimi-K2.6": True}))
    shapes = full_size_shapes()
    assert len(shapes) > 139_000
    await service.put("orgs/acme/files/file-cfg", kimi_config())
    file_size = write_sparse(service, "orgs/acme/files/file-w", shapes)
    assert file_size > 40 * 10**9

    await service.submit(job("val-kimi", **KIMI_JOB))
    gpu_job = RunGpuValidation.from_event((await service.gpu_jobs.next()).event)
    assert (gpu_job.validation_id, gpu_job.model_slug) == ("val-kimi", "kimi-k2-6")
    assert service.blobs.bytes_read < file_size // 1000


async def test_one_wrong_shape_among_140_thousand_tensors_is_named(service):
    shapes = dict(full_size_shapes())
    shapes[WRONG] = ([32, 7169], "BF16")
    await service.put("orgs/acme/files/file-cfg", kimi_config())
    write_sparse(service, "orgs/acme/files/file-w", shapes)

    await service.submit(job("val-kimi", **KIMI_JOB))
    _, failed = await service.statuses.take(2)
    assert failed.event.data["result_code"] == codes.SHAPE_MISMATCH
    assert failed.event.data["result_message"] == f"shape_mismatch: {WRONG}: expected [32, 7168], found [32, 7169]"
