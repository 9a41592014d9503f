#!/bin/sh
# Runs the broker in the foreground as the rabbitmq user. The Erlang cookie
# comes from RABBITMQ_ERLANG_COOKIE (as with the official image) so that the
# nodes of a cluster share it; it is written to the file the tools read.
set -eu
if [ -n "${RABBITMQ_ERLANG_COOKIE:-}" ]; then
    umask 077
    rm -f "$HOME/.erlang.cookie"  # 0400 from the previous start
    printf '%s' "$RABBITMQ_ERLANG_COOKIE" >"$HOME/.erlang.cookie"
    chmod 0400 "$HOME/.erlang.cookie"
    unset RABBITMQ_ERLANG_COOKIE
fi
# Not Debian's /usr/sbin wrapper: it sends the log to a file and does not exec.
exec /usr/lib/rabbitmq/bin/rabbitmq-server "$@"
