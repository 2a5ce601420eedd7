# The app image. The database is a separate PostGIS service (docker-compose.yml),
# so DATABASE_URL is always set here and no embedded cluster is started.

# The web viewer's assets (MapLibre, Cesium, our bundle), built as scripts/bootstrap.sh does.
FROM node:20-bookworm-slim AS viewer
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY gisplatform/viewer gisplatform/viewer
RUN node gisplatform/viewer/build.mjs

FROM python:3.12-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
RUN apt-get update && apt-get install -y --no-install-recommends postgresql-client \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml README.md ./
COPY gisplatform gisplatform
COPY layers layers
COPY tiles tiles
COPY models3d models3d
COPY migrations migrations
COPY --from=viewer /app/gisplatform/viewer/dist gisplatform/viewer/dist
RUN pip install --no-cache-dir -e .
RUN useradd --system --home /app gis && mkdir -p /app/.gisplatform && chown gis /app/.gisplatform
USER gis
EXPOSE 8000
# `up` applies migrations, then serves.
CMD ["gisplatform", "up", "--host", "0.0.0.0"]
