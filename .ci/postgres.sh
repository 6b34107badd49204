#!/usr/bin/env bash
# Install (if needed) and start a local PostgreSQL with the role/database the tests use.
set -euo pipefail
if ! command -v pg_ctlcluster >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq postgresql >/dev/null
fi
ver=$(ls /usr/lib/postgresql | sort -V | tail -1)
if ! pg_lsclusters -h | grep -q online; then
  pg_lsclusters -h | grep -q "^$ver main" || pg_createcluster "$ver" main >/dev/null
  pg_ctlcluster "$ver" main start
fi
su postgres -c "psql -qtAc \"SELECT 1 FROM pg_roles WHERE rolname='pagelens'\"" | grep -q 1 \
  || su postgres -c "psql -qc \"CREATE ROLE pagelens LOGIN PASSWORD 'pagelens'\""
su postgres -c "psql -qtAc \"SELECT 1 FROM pg_database WHERE datname='pagelens'\"" | grep -q 1 \
  || su postgres -c "createdb -O pagelens pagelens"
echo "postgres ready: postgresql+psycopg://pagelens:pagelens@127.0.0.1:5432/pagelens"
