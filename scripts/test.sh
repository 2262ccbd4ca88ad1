#!/usr/bin/env bash
# Runs Redeploy's whole test suite on a fresh Debian machine: makes sure PostgreSQL is installed,
# running and reachable on 127.0.0.1:5432 without a password (the tests create and drop their own
# databases), makes sure headless Chromium and Node.js are there for the console's browser test,
# then runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
apt_updated=0
apt_install() {
  if [ "$apt_updated" -eq 0 ]; then as_root apt-get update -qq; apt_updated=1; fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# --- PostgreSQL -------------------------------------------------------------------------------
PG_URL="${REDEPLOY_TEST_POSTGRES:-postgres://postgres@127.0.0.1:5432}"
export REDEPLOY_TEST_POSTGRES="$PG_URL"
if ! command -v pg_ctlcluster >/dev/null 2>&1; then
  echo "test.sh: installing PostgreSQL"
  apt_install postgresql
fi
if ! pg_isready -q -h 127.0.0.1 -p 5432; then
  echo "test.sh: starting PostgreSQL"
  version=$(ls /etc/postgresql | sort -n | tail -n 1)
  as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
fi
if ! psql "$PG_URL/postgres" -Atqc 'select 1' >/dev/null 2>&1; then
  # A fresh install asks for a password on TCP; the tests use a local trust rule instead.
  echo "test.sh: allowing local passwordless connections for the tests"
  version=$(ls /etc/postgresql | sort -n | tail -n 1)
  hba="/etc/postgresql/$version/main/pg_hba.conf"
  as_root sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$hba"
  as_root pg_ctlcluster --skip-systemctl-redirect "$version" main reload
  for _ in $(seq 1 30); do psql "$PG_URL/postgres" -Atqc 'select 1' >/dev/null 2>&1 && break; sleep 1; done
fi
psql "$PG_URL/postgres" -Atqc 'select version()' >/dev/null
# Two tests at a time, each with up to three servers of 30 pooled connections (and a database
# of its own), outgrow PostgreSQL's default 100 connections ("sorry, too many clients").
if [ "$(psql "$PG_URL/postgres" -Atqc 'show max_connections')" -lt 300 ]; then
  echo "test.sh: raising PostgreSQL's max_connections to 300 for the tests"
  psql "$PG_URL/postgres" -Atqc 'alter system set max_connections = 300' >/dev/null
  version=$(ls /etc/postgresql | sort -n | tail -n 1)
  as_root pg_ctlcluster --skip-systemctl-redirect "$version" main restart
  for _ in $(seq 1 30); do psql "$PG_URL/postgres" -Atqc 'select 1' >/dev/null 2>&1 && break; sleep 1; done
fi

# --- Chromium and Node.js for the console's browser test ----------------------------------------
# crates/server/tests/it/browser.rs drives /usr/bin/chromium with playwright-core (pinned in
# crates/server/tests/browser/package-lock.json; the test runs `npm ci` itself when needed).
if [ -d crates/server/tests/browser ]; then
  if [ ! -x /usr/bin/chromium ]; then
    echo "test.sh: installing Chromium"
    apt_install chromium
  fi
  if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    echo "test.sh: installing Node.js and npm"
    apt_install nodejs npm
  fi
  if [ ! -d crates/server/tests/browser/node_modules/playwright-core ]; then
    (cd crates/server/tests/browser && npm ci --no-audit --no-fund)
  fi
fi

# --- The tests -----------------------------------------------------------------------------------
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --locked --no-fail-fast "$@"
else
  cargo test --workspace --locked --no-fail-fast "$@"
fi
