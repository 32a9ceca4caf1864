#!/usr/bin/env bash
# Fetches llama.cpp's tokenizer test vocabularies (vocabulary-only GGUFs with their .inp/.out
# cases, the data of llama.cpp's tests/test-tokenizer-0) into models/vocab/, from the sdist of the
# PyPI package llama-cpp-python==0.3.36, which vendors llama.cpp with its models/ folder.
# Idempotent: does nothing when every file is present and matches vocab.sha256. Needs python3
# with pip. Only vendor/llama.cpp/models/ggml-vocab-* is extracted.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
version="0.3.36"
sdist="llama_cpp_python-$version.tar.gz"
sdist_sha="832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e"
dest="$here/vocab"
sums="$here/vocab.sha256"

verified() { [ -d "$dest" ] && (cd "$dest" && sha256sum --check --status --strict "$sums"); }

if verified; then
  echo "models/vocab/ is present and verified" >&2
  exit 0
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
echo "downloading the llama-cpp-python==$version sdist from PyPI (about 77 MB)..." >&2
# `--no-binary llama-cpp-python`, not `:all:`: pip prepares the sdist's metadata, and with
# `:all:` it would also build its build dependencies (cmake, ninja) from source, for many minutes.
python3 -m pip download --quiet --no-deps --no-binary llama-cpp-python --disable-pip-version-check \
  "llama-cpp-python==$version" -d "$tmp"
if ! echo "$sdist_sha  $tmp/$sdist" | sha256sum --check --status; then
  echo "error: checksum mismatch for $sdist (expected sha256 $sdist_sha)" >&2
  exit 1
fi
mkdir -p "$tmp/x"
tar -xzf "$tmp/$sdist" -C "$tmp/x" --strip-components=4 --wildcards \
  "llama_cpp_python-$version/vendor/llama.cpp/models/ggml-vocab-*"
rm -rf "$dest"
mv "$tmp/x" "$dest"
if ! verified; then
  echo "error: the files extracted into models/vocab/ do not match models/vocab.sha256" >&2
  exit 1
fi
echo "models/vocab/ ready ($(ls "$dest" | wc -l) files)" >&2
