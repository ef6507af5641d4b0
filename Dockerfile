# The agent-analytics service: OTLP/HTTP receiver on 4318, data source on 8080.
# Build: docker build -t agent-analytics .   (docker-compose.yml builds it for you)
FROM python:3.12.8-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml README.md ./
COPY agent_analytics ./agent_analytics
COPY ingest ./ingest
COPY sql ./sql
COPY datasource ./datasource
COPY dashboards ./dashboards
# The demo extra brings the OpenTelemetry SDK, so `agent-analytics demo` runs inside the image.
RUN pip install ".[demo]" && useradd --system --uid 10001 --no-create-home aa

USER aa
# Listen on every interface inside the container; tokens come from the environment.
ENV AA_HOST=0.0.0.0 \
    AA_INGEST_PORT=4318 \
    AA_QUERY_PORT=8080
EXPOSE 4318 8080

# Liveness and database reachability (the only endpoint without a token).
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=5 \
  CMD ["python", "-c", "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4).status == 200 else 1)"]

# Apply the schema (idempotent), then serve both listeners.
CMD ["sh", "-c", "agent-analytics migrate && exec agent-analytics serve"]
