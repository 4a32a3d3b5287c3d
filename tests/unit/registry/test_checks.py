"""Create-request checks: unknown and repeated models, and the two files' org, purpose and state."""
from services.registry.domain.checks import file_check, model_check, same_files_check
from shared.contracts.files import InternalFile

KNOWN = {"loraserve/kimi-k2-tiny", "moonshotai/Kimi-K2.6"}


def internal_file(purpose="lora", status="processed") -> InternalFile:
    return InternalFile(id="file-1", org_id="acme", filename="adapter_config.json", bytes=10, purpose=purpose,
                        status=status, sha256="0" * 64, object_key="orgs/acme/files/file-1")


def test_each_unknown_model_is_named_under_supported_models():
    problems = model_check(["loraserve/kimi-k2-tiny", "acme/nope", "acme/also-nope"], KNOWN)
    assert [p.param for p in problems] == ["supported_models", "supported_models"]
    assert "'acme/nope'" in problems[0].message and "'acme/also-nope'" in problems[1].message
    assert problems[0].code == "model_not_found"


def test_a_model_listed_twice_is_refused():
    [problem] = model_check(["moonshotai/Kimi-K2.6", "moonshotai/Kimi-K2.6"], KNOWN)
    assert problem.code == "duplicate_model"


def test_a_missing_file_is_not_found_under_its_param():
    [problem] = file_check("weights_file_id", "file-x", None)
    assert (problem.param, problem.code) == ("weights_file_id", "file_not_found")
    assert "'file-x'" in problem.message


def test_a_file_for_another_purpose_is_refused():
    [problem] = file_check("config_file_id", "file-1", internal_file(purpose="fine-tune"))
    assert (problem.param, problem.code) == ("config_file_id", "invalid_file_purpose")


def test_a_usable_lora_file_passes():
    assert file_check("config_file_id", "file-1", internal_file()) == []
    assert file_check("config_file_id", "file-1", internal_file(status="uploaded")) == []
    assert file_check("config_file_id", "file-1", internal_file(status="error"))[0].code == "invalid_file"


def test_config_and_weights_must_be_two_files():
    assert same_files_check("file-1", "file-1")[0].param == "weights_file_id"
    assert same_files_check("file-1", "file-2") == []
