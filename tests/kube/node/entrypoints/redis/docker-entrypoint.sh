#!/bin/sh
# The redis image's docker-entrypoint.sh (docker-library/redis), as run by a non-root user:
# flags alone mean redis-server with those flags; then exec the command.
set -e
case "$1" in -*|*.conf) set -- redis-server "$@" ;; esac
exec "$@"
