#!/usr/bin/env bash
# The console's browser tests (tests/e2e/console) drive Debian's chromium with Debian's chromedriver through
# Selenium, at these fixed paths: install both where missing. Nothing is downloaded at test time (no
# Selenium Manager, no Playwright browser build).
set -euo pipefail
if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then exit 0; fi
echo "chromium or chromedriver not found: installing Debian's chromium and chromium-driver" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq && apt-get install -y -qq chromium chromium-driver >/dev/null
/usr/bin/chromium --version >&2
