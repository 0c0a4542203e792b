# syntax=docker/dockerfile:1
# The detector service image: `docker build -t detector:0.1.0 .` from the repository root.
#
# Stage 1 builds wheels of the project and of every dependency, resolved against
# constraints.txt so the image gets the exact versions CI tested. Stage 2 installs only those
# wheels: no compiler, no pip cache, no source tree in the final image.
#
# Both stages use one base (tests/deploy checks they agree), pinned by tag and by the digest of
# its multi-architecture index, so a rebuild gets the same bytes until someone moves the pin
# (docs/deploy.md, "Updating the pinned images").

FROM python:3.11.14-slim-bookworm@sha256:65a93d69fa75478d554f4ad27c85c1e69fa184956261b4301ebaf6dbb0a3543d AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src
COPY pyproject.toml constraints.txt README.md LICENSE ./
COPY detector ./detector
RUN pip wheel --no-cache-dir --wheel-dir /wheels --constraint constraints.txt .


FROM python:3.11.14-slim-bookworm@sha256:65a93d69fa75478d554f4ad27c85c1e69fa184956261b4301ebaf6dbb0a3543d AS runtime

LABEL org.opencontainers.image.title="cloudtrail-detector" \
      org.opencontainers.image.description="Streaming anomaly detection for AWS CloudTrail events with Sigma rules" \
      org.opencontainers.image.licenses="Apache-2.0"

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    DETECTOR_RULES_DIR=/etc/detector/rules \
    DETECTOR_LISTS_DIR=/etc/detector/rules/lists \
    DETECTOR_DATA_DIR=/var/lib/detector \
    DETECTOR_WEB_HOST=0.0.0.0 \
    DETECTOR_WEB_PORT=6066

# A fixed UID/GID so Kubernetes can enforce runAsUser: 10001 and volumes can be prepared for it.
RUN groupadd --system --gid 10001 detector \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/detector \
       --no-create-home --shell /usr/sbin/nologin detector \
    && install -d -o 10001 -g 10001 -m 0750 /var/lib/detector

# The wheels are bind-mounted from the builder, so they never become a layer of this image.
# --no-deps over the whole wheel set installs exactly the resolved versions; pip check proves
# the set is consistent.
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --no-deps /wheels/*.whl \
    && pip check

# Rules are baked in, owned by root and read-only for the service; mount a directory (or one
# ConfigMap per folder) over /etc/detector/rules to replace them.
COPY rules/ /etc/detector/rules/

USER 10001:10001
WORKDIR /var/lib/detector
VOLUME ["/var/lib/detector"]
EXPOSE 6066

# No curl in slim images: python's urllib is the probe. Any non-2xx answer raises, exit 1.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('DETECTOR_WEB_PORT', '6066') + '/healthz', timeout=4)"]

ENTRYPOINT ["detector", "worker"]
