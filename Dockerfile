# onedoor application image (production runs it with PostgreSQL, Redis and coturn: docker-compose.yml)
FROM python:3.11-slim-bookworm
RUN apt-get update && apt-get install -y --no-install-recommends fonts-noto-cjk \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml README.md ./
COPY server server
COPY signaling signaling
COPY media media
COPY web web
COPY scheduling scheduling
COPY migrations migrations
RUN pip install --no-cache-dir -e .
RUN useradd --system --home /var/lib/onedoor onedoor && mkdir -p /var/lib/onedoor \
    && chown onedoor /var/lib/onedoor
USER onedoor
ENV ONEDOOR_DATA_DIR=/var/lib/onedoor ONEDOOR_HOST=0.0.0.0
EXPOSE 8080
CMD ["sh", "-c", "onedoor db upgrade && onedoor serve"]
