# One image for every process: `solver api` (the default), `worker`, `engine`, `oracle`, `migrate`.
#
#   docker build -t symmio-solver .
#   docker run --env-file .env -p 8000:8000 symmio-solver            # the API
#   docker run --env-file .env --env-file .env.worker symmio-solver worker
#
# Layout inside: the virtualenv in /opt/venv, the code in /app (solver/, alembic/, alembic.ini,
# config/, contracts_abi/). The code finds alembic.ini, config/ and contracts_abi/ next to the
# `solver` package (solver/settings.py, solver/db/migrate.py, solver/chain/abi.py), so the
# package is installed *editable* from /app rather than copied into site-packages.
#
# The HEALTHCHECK probes the API's /health. It means nothing for `worker`, `engine` or
# `migrate`: disable it there (docker-compose.yml does, with `healthcheck: {disable: true}`).

ARG PYTHON_IMAGE=python:3.11-slim

# --- builder: the virtualenv with the pinned dependencies, then the package (editable) ---
FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /app
# Dependencies first, in their own layer: rebuilt only when pyproject.toml changes. The list is
# [project].dependencies itself (pinned there), without the dev and embedded extras.
COPY pyproject.toml ./
RUN python -c "import tomllib; deps = tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']; open('/tmp/requirements.txt', 'w').write('\n'.join(deps) + '\n')" \
    && pip install -r /tmp/requirements.txt
COPY README.md ./
COPY solver ./solver
# Only the `solver` console script and the import path to /app/solver; no dependency changes.
RUN pip install --no-deps -e .

# --- runtime: the venv and the code, a non-root user, nothing else ---
FROM ${PYTHON_IMAGE}
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH \
    SOLVER_API__HOST=0.0.0.0 \
    SOLVER_ORACLE__HOST=0.0.0.0
RUN groupadd --system --gid 10001 solver \
    && useradd --system --uid 10001 --gid 10001 --home-dir /app --no-create-home --shell /usr/sbin/nologin solver
WORKDIR /app
COPY --from=builder /opt/venv /opt/venv
COPY solver ./solver
COPY alembic ./alembic
COPY alembic.ini ./
COPY config ./config
COPY contracts_abi ./contracts_abi
# Bytecode compiled once here (owned by root, read-only to the app user), not at every start.
RUN python -m compileall -q /app/solver /app/alembic
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD python -c "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('SOLVER_API__PORT', '8000'), timeout=4)" || exit 1
ENTRYPOINT ["solver"]
CMD ["api"]
