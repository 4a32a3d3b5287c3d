"""Does `base_model_name_or_path` identify the model being validated?

PEFT writes there whatever the base model was loaded from: a Hub id or a local directory.
For a model whose id is `owner/name` (e.g. `moonshotai/Kimi-K2.6`) these are accepted,
comparing case-insensitively as the Hub does:

1. the id itself: `moonshotai/Kimi-K2.6`;
2. the id with a revision: `moonshotai/Kimi-K2.6@main`, `moonshotai/Kimi-K2.6@<commit sha>`;
3. a local path whose last two parts are the id's two parts: `/models/moonshotai/Kimi-K2.6`,
   `./moonshotai/Kimi-K2.6/` (`\\` separators too);
4. a Hugging Face cache snapshot of the id, i.e. the id with a revision suffix on disk:
   `~/.cache/huggingface/hub/models--moonshotai--Kimi-K2.6/snapshots/<revision>`.

Anything else (another model, a fine-tune's own id, a path to a directory named differently)
is refused: the adapter's shapes were learned on that other model.
"""
from __future__ import annotations

import re

MAX_NAME_CHARS = 1024
_REVISION = re.compile(r"^[^\s@]+$")


def identifies(base_model: str, model_id: str) -> bool:
    """True when `base_model` names `model_id` under one of the four rules above."""
    if not base_model or len(base_model) > MAX_NAME_CHARS:
        return False
    wanted = model_id.casefold()
    given = base_model.strip().casefold()
    if given == wanted:
        return True
    head, at, revision = given.rpartition("@")
    if at and head == wanted and _REVISION.match(revision):
        return True
    return _is_local_path_of(given, wanted)


def _is_local_path_of(path: str, model_id: str) -> bool:
    owner, _, name = model_id.partition("/")
    parts = [part for part in path.replace("\\", "/").split("/") if part]
    if len(parts) >= 2 and parts[-2:] == [owner, name]:
        return True
    cache_dir = f"models--{owner}--{name}"
    return len(parts) >= 3 and parts[-3] == cache_dir and parts[-2] == "snapshots"
