#!/usr/bin/env bash
# System packages the tests need that pip cannot install. Installs them when absent and we are
# root (CI runs as root); otherwise says what is missing and carries on (those tests skip).
set -euo pipefail
missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
# initdb/pg_ctl: tests start their own PostgreSQL when none answers (Debian keeps them off PATH)
{ command -v initdb >/dev/null 2>&1 || compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null; } || missing+=(postgresql)
ldconfig -p 2>/dev/null | grep -q libportaudio.so.2 || missing+=(libportaudio2)
command -v tmux >/dev/null 2>&1 || missing+=(tmux)
# espeak-ng: speaks the questions of `python -m benchmarks voice_e2e` (local, no model download)
command -v espeak-ng >/dev/null 2>&1 || missing+=(espeak-ng)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing system packages: ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null 2>&1 \
    || { apt-get update -qq >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null; }
else
  echo "note: missing system packages (${missing[*]}); tests that need them will be skipped" >&2
fi
