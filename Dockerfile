# pixgate: OpenAI-compatible image gateway. Build: docker build -t pixgate .
# Run:  docker run -p 8080:8080 -e PIXGATE_API_KEYS=change-me \
#         -v "$PWD/routes.yaml:/config/routes.yaml:ro" -v "$PWD/providers.d:/config/providers.d:ro" pixgate
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md routes.yaml ./
COPY engine ./engine
COPY schemas ./schemas
COPY providers.d ./providers.d
RUN pip install . && mkdir -p /config && cp -r routes.yaml providers.d /config/ \
    && useradd --create-home --uid 10001 pixgate && mkdir -p /data && chown pixgate /data

USER pixgate
WORKDIR /home/pixgate
# Config is baked in as a default; mount your own over /config (a ConfigMap works).
ENV PIXGATE_CONFIG=/config PIXGATE_HOST=0.0.0.0 PIXGATE_PORT=8080 PIXGATE_STORAGE_DIR=/data/files
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=3s --start-period=5s --retries=3 \
  CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/health', timeout=2)"
# Listening on 0.0.0.0 requires PIXGATE_API_KEYS (or --allow-anonymous, on purpose).
CMD ["pixgate", "serve", "--host", "0.0.0.0"]
