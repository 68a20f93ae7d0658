#!/usr/bin/env bash
# System packages the tests need, from Debian (never `playwright install` or other downloads):
# Chromium for tests/test_browser.py, and a CJK font for the Chinese plots. Installed when missing
# and we are root (as in CI); otherwise the command to run is printed and the tests say what is missing.
set -euo pipefail
needed=()
for pkg in chromium fonts-noto-cjk; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || needed+=("$pkg")
done
((${#needed[@]})) || exit 0
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update
    apt-get install -y --no-install-recommends "${needed[@]}"
else
    echo "missing system packages: ${needed[*]} (install with: sudo apt-get install -y ${needed[*]})" >&2
fi
