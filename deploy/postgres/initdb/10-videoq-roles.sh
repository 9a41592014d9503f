#!/bin/sh
# Runs once, when the postgres container initialises an empty data directory
# (mounted into /docker-entrypoint-initdb.d by compose.yaml).
#
# Two roles instead of the superuser:
#   videoq_owner  owns the database and its schema; only `videoq migrate` uses it.
#   videoq_app    what api, worker and janitor use: read and write rows, no DDL.
# Passwords come from the environment (compose passes them from .env); psql's
# :'var' quoting keeps any character in them safe.
set -eu
: "${VIDEOQ_DB_OWNER_PASSWORD:?}" "${VIDEOQ_DB_APP_PASSWORD:?}"

psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
    -v owner_password="$VIDEOQ_DB_OWNER_PASSWORD" \
    -v app_password="$VIDEOQ_DB_APP_PASSWORD" \
    -v dbname="$POSTGRES_DB" <<'SQL'
CREATE ROLE videoq_owner LOGIN PASSWORD :'owner_password';
CREATE ROLE videoq_app LOGIN PASSWORD :'app_password';

-- The owner of the database owns its public schema (PostgreSQL 15+), so the
-- migrations it runs create tables there; nobody else gets CREATE.
ALTER DATABASE :"dbname" OWNER TO videoq_owner;
REVOKE ALL ON DATABASE :"dbname" FROM PUBLIC;
GRANT CONNECT, TEMPORARY ON DATABASE :"dbname" TO videoq_owner, videoq_app;
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO videoq_app;

-- Whatever the owner creates later (every migration), the app may use as data.
ALTER DEFAULT PRIVILEGES FOR ROLE videoq_owner IN SCHEMA public
    GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO videoq_app;
ALTER DEFAULT PRIVILEGES FOR ROLE videoq_owner IN SCHEMA public
    GRANT USAGE, SELECT ON SEQUENCES TO videoq_app;
ALTER DEFAULT PRIVILEGES FOR ROLE videoq_owner IN SCHEMA public
    GRANT EXECUTE ON FUNCTIONS TO videoq_app;
SQL
