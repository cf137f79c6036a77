#!/usr/bin/env bash
# Optional: the Debian Chromium (and a font) that test/report-chromium.test.ts drives through playwright-core.
# Installs nothing when /usr/bin/chromium exists, or when apt-get or root is missing; the test then skips.
# Never downloads a browser from anywhere else. Always exits 0: the browser test is optional.
set -uo pipefail
if [ -x /usr/bin/chromium ]; then
  echo "setup-chromium: /usr/bin/chromium present"
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1 || [ "$(id -u)" != 0 ]; then
  echo "setup-chromium: skipped (needs apt-get and root); the report browser test will skip"
  exit 0
fi
echo "setup-chromium: installing chromium and fonts-dejavu-core (Debian)"
if { apt-get update -qq >/dev/null \
     && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null; } 2>&1 | tail -n 5; then
  [ -x /usr/bin/chromium ] && echo "setup-chromium: $(/usr/bin/chromium --version 2>/dev/null || echo installed)"
else
  echo "setup-chromium: installation failed; the report browser test will skip"
fi
exit 0
