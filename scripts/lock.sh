#!/usr/bin/env bash
# `make lock`: regenerate requirements/*.txt from pyproject.toml.
#
#   scripts/lock.sh            every package to the newest release pyproject allows
#   scripts/lock.sh ccxt ...   only these packages; every other pin stays as it is
#
# The lock files pin every package, with hashes, for every platform and Python >= 3.11
# (a universal resolution), plus what installing needs: pip itself, and setuptools
# and wheel from [build-system] for the editable build (the Makefile builds with
# --no-build-isolation, so nothing unpinned is fetched). Installing them needs only
# pip; uv is used here, to write them, and lives in a throwaway venv.
#
# test.txt is resolved first and base.txt is constrained by it, so the runtime
# packages an operator installs are the versions the tests passed with.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python3}
UV_VERSION=0.13.9

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$PY" -m venv "$tmp/venv"
"$tmp/venv/bin/pip" install -q "uv==$UV_VERSION"
uv=$tmp/venv/bin/uv

# What installing and building the project needs, read from pyproject.toml.
mkdir -p requirements
"$PY" - >requirements/install.in <<'PYEOF'
import tomllib
with open("pyproject.toml", "rb") as f:
    build = tomllib.load(f)["build-system"]["requires"]
print("# Written by `make lock` from pyproject.toml's [build-system]: what installing")
print("# the lock files and building the project need. Edit pyproject.toml, not this.")
print("\n".join(["pip", *build]))
PYEOF

if [ $# -gt 0 ]; then
  upgrade=()
  for pkg in "$@"; do upgrade+=(--upgrade-package "$pkg"); done
else
  upgrade=(--upgrade)
fi

compile() {
  "$uv" pip compile --quiet --no-config --universal --python-version 3.11 \
    --generate-hashes --custom-compile-command "make lock" "${upgrade[@]}" "$@"
}

compile pyproject.toml --extra test requirements/install.in -o requirements/test.txt
compile pyproject.toml requirements/install.in -c requirements/test.txt -o requirements/base.txt
echo "requirements/base.txt and requirements/test.txt written (uv $UV_VERSION)"
