# watchfloor: a small image that runs `watchfloor run` as a non-root user, with a health check.
#   docker build -t watchfloor .
#   docker run -v $PWD/watchfloor.toml:/config/watchfloor.toml:ro -e WATCHFLOOR_SLACK__BOT_TOKEN=... watchfloor

# Build stage: compilers and pip caches stay here; only the virtual environment moves on.
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /venv
WORKDIR /src
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY commands ./commands
COPY templates ./templates
COPY storage ./storage
COPY ioc ./ioc
COPY watchfloor ./watchfloor
RUN /venv/bin/pip install . && find /venv -name '__pycache__' -prune -exec rm -rf {} +

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PATH=/venv/bin:$PATH \
    MPLCONFIGDIR=/tmp/matplotlib \
    WATCHFLOOR_SERVICE__PORT=8080 WATCHFLOOR_SERVICE__HOST=0.0.0.0
COPY --from=build /venv /venv
# A fixed uid so volume ownership is predictable across rebuilds; no login shell, no home directory use.
RUN useradd --system --uid 10001 --user-group --home-dir /data --shell /usr/sbin/nologin watchfloor \
    && mkdir -p /data /config && chown watchfloor:watchfloor /data
# /data holds what must survive a restart: the Matrix store (store_path is relative) and a SQLite database.
WORKDIR /data
VOLUME ["/data"]
USER watchfloor
EXPOSE 8080 3000
# slim has no curl: ask /healthz with the Python already in the image. 503 raises, so the exit code is 1.
HEALTHCHECK --interval=30s --timeout=6s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('WATCHFLOOR_SERVICE__PORT', '8080'), timeout=5)"]
# watchfloor exits 0 within 10 s of SIGTERM, inside docker's default stop timeout.
STOPSIGNAL SIGTERM
ENTRYPOINT ["watchfloor"]
CMD ["run", "--config", "/config/watchfloor.toml"]
