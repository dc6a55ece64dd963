#!/bin/sh
# Entrypoint of the MLflow server image: `mlflow server "$@"`, configured from the environment.
# When MLFLOW_AUTH_DATABASE_URI is set (k8s/ sets it, with `--app-name basic-auth`), the basic-auth
# config file is written to $TMPDIR, because that URI holds a password and must not be baked into
# the image. The admin user comes from MLFLOW_AUTH_ADMIN_USERNAME / MLFLOW_AUTH_ADMIN_PASSWORD.
set -eu

if [ -n "${MLFLOW_AUTH_DATABASE_URI:-}" ]; then
    config="${TMPDIR:-/tmp}/mlflow-basic-auth.ini"
    umask 077
    # configparser interpolates '%': double it (URL-encoded passwords contain '%').
    database_uri=$(printf '%s' "$MLFLOW_AUTH_DATABASE_URI" | sed 's/%/%%/g')
    {
        echo "[mlflow]"
        echo "default_permission = ${MLFLOW_AUTH_DEFAULT_PERMISSION:-READ}"
        echo "database_uri = ${database_uri}"
        echo "authorization_function = mlflow.server.auth:authenticate_request_basic_auth"
    } > "$config"
    export MLFLOW_AUTH_CONFIG_PATH="$config"
fi

exec mlflow server "$@"
