#!/usr/bin/env bash
# Makes the default model's quantization variants (models/manifest.json, "variants") in models/cache/ and
# checks each one's sha256: the files the K-quant tests load (crates/engine/tests/it/kquant_llamacpp.rs).
# They come from the bundled Q4_1 file through llama.cpp's own quantizer with requantization allowed
# (models/tools/quantize.cpp), which is deterministic, so the checksums pin the bytes; they are made here
# rather than committed because each is about 100 MB.
#
# Idempotent and cheap when done: a file already there with the right checksum is kept, and llama.cpp is
# built (models/tools/build.sh, a few minutes, kept in .bench/) only when some file is missing.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache="$here/cache"
manifest="$here/manifest.json"
"$here/fetch.sh" >/dev/null

source_file="$cache/$(python3 -c "import json; print(json.load(open('$manifest'))['models'][0]['file'])")"
# One line per variant: file, llama.cpp ftype number, sha256, and the file it is made from (the bundled
# model unless the variant names an earlier variant as its `source`).
variants="$(python3 -c "
import json
for v in json.load(open('$manifest'))['variants']:
    print(v['file'], v['ftype'], v['sha256'], v.get('source', ''))
")"

while read -r file ftype sha source; do
  target="$cache/$file"
  if [ -f "$target" ] && echo "$sha  $target" | sha256sum --check --status; then
    echo "model ready: $target"
    continue
  fi
  "$here/tools/build.sh"
  tmp="$target.partial"
  from="$source_file"
  [ -z "$source" ] || from="$cache/$source"
  "$here/../.bench/llamacpp-min/bin/quantize" "$from" "$tmp" "$ftype" >"$tmp.log" 2>&1 || {
    cat "$tmp.log" >&2
    exit 1
  }
  rm -f "$tmp.log"
  if ! echo "$sha  $tmp" | sha256sum --check --status; then
    echo "checksum mismatch for $file: expected $sha, made $(sha256sum "$tmp" | cut -d' ' -f1)" >&2
    exit 1
  fi
  mv "$tmp" "$target"
  echo "model ready: $target"
done <<<"$variants"
