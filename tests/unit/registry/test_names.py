"""The seed's naming rules: 2-64 of [a-z0-9-], alphanumeric at both ends, never shaped like a UUID."""
import uuid

import pytest

from services.registry.domain.checks import name_check
from services.registry.domain.names import looks_like_uuid, name_problems


@pytest.mark.parametrize("name", ["funnier-v1", "ab", "a1", "9-lives", "x" * 64, "a--b"])
def test_valid_names_pass(name):
    assert name_problems(name) == []


@pytest.mark.parametrize("name, words", [
    ("a", "2-64 characters"),
    ("x" * 65, "2-64 characters"),
    ("Funnier", "[a-z0-9-]"),
    ("funny_v1", "[a-z0-9-]"),
    ("funny v1", "[a-z0-9-]"),
    ("-funny", "start and end"),
    ("funny-", "start and end"),
    ("fünny", "[a-z0-9-]"),
])
def test_each_broken_rule_is_named(name, words):
    problems = name_problems(name)
    assert any(words in p for p in problems), problems


@pytest.mark.parametrize("shape", [str, lambda u: u.hex])
def test_uuid_shaped_names_are_refused(shape):
    name = shape(uuid.uuid4())
    assert looks_like_uuid(name)
    assert any("UUID" in p for p in name_problems(name))


def test_every_problem_is_reported_at_once_with_the_param():
    problems = name_check("-A")
    assert len(problems) == 2 and {p.param for p in problems} == {"name"}


def test_empty_name_breaks_the_length_rule_only_once():
    assert len(name_problems("")) == 1
