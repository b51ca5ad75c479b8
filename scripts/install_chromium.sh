#!/usr/bin/env sh
# `make test` runs this: the browser test needs Debian's chromium. It installs it only where it is
# missing and the machine allows it (root with apt-get, as on CI); elsewhere the test skips and says why.
if command -v chromium >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" != "0" ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "chromium is not installed and cannot be installed here (needs root and apt-get): the browser test will be skipped"
    exit 0
fi
echo "installing chromium for the browser test (apt-get)"
export DEBIAN_FRONTEND=noninteractive
if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium fonts-liberation >/dev/null; }; then
    echo "could not install chromium: the browser test will be skipped"
fi
exit 0
