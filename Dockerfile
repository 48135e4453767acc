FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY commands ./commands
COPY templates ./templates
COPY storage ./storage
COPY ioc ./ioc
RUN pip install --no-cache-dir . && useradd --system --uid 10001 watchfloor
USER watchfloor
CMD ["watchfloor", "run", "--config", "/config/watchfloor.toml"]
