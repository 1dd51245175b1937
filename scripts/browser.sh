#!/usr/bin/env bash
# The dashboard tests' browser: Debian's Chromium, installed when missing (Playwright drives it with
# its executable path set; Playwright's own browser download cannot reach its host). Needs root
# (or sudo) to install; idempotent.
set -euo pipefail
if command -v chromium >/dev/null; then
    exit 0
fi
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
echo "== installing chromium (for the dashboard's browser tests)"
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null \
    || { $SUDO apt-get update -q >/dev/null && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null; }
