# The catalog in a small image: `docker build -t catalog .`, then `docker run --rm catalog demo`.
# The entry point is `catalog` itself, so any command runs as `docker run IMAGE COMMAND`; the
# default command is the foreground schedule runner (`catalog schedule run`).

# -- build: a virtual environment with catalog and its dependencies, no compiler left behind ----
FROM python:3.12-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/catalog
WORKDIR /src
COPY pyproject.toml README.md ./
COPY catalog ./catalog
RUN /opt/catalog/bin/pip install --no-compile . \
    && /opt/catalog/bin/python -m compileall -q /opt/catalog/lib

# -- run: the environment only, as an unprivileged user with a numeric id ------------------------
FROM python:3.12-slim-bookworm
# 10001: the id `catalog schedule kubernetes` puts in runAsUser (runAsNonRoot checks it).
RUN groupadd --system --gid 10001 catalog \
    && useradd --system --uid 10001 --gid catalog --home-dir /data --no-create-home catalog \
    && mkdir -p /data /etc/catalog \
    && chown catalog:catalog /data
COPY --from=build /opt/catalog /opt/catalog
# The catalog (SQLite by default: /data/catalog/catalog.db) and the demo's live in the volume;
# a config file mounted at /etc/catalog/config.toml is read without --config.
ENV PATH=/opt/catalog/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/data \
    XDG_DATA_HOME=/data \
    XDG_CONFIG_HOME=/etc
VOLUME ["/data"]
WORKDIR /data
USER 10001:10001
# Healthy while the config reads and the catalog's run records answer; a catalog the first
# scheduled sync has not created yet is healthy too (it reads as "never ran").
HEALTHCHECK --interval=5m --timeout=30s --start-period=1m \
    CMD ["catalog", "schedule", "--json"]
ENTRYPOINT ["catalog"]
CMD ["schedule", "run", "--log-format", "json"]
