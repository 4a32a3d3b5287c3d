from __future__ import annotations

import pytest

from tests.deploy.manifests import K8S, KubectlMissing, render

_rendered: dict[str, list[dict]] = {}


@pytest.fixture(scope="session")
def rendered():
    """overlay name -> its rendered objects (each overlay built once per session)."""
    def get(overlay: str) -> list[dict]:
        if overlay not in _rendered:
            try:
                _rendered[overlay] = render(K8S / "overlays" / overlay)
            except KubectlMissing as exc:
                pytest.fail(str(exc), pytrace=False)
        return _rendered[overlay]
    return get
