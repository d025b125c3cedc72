# One image for every `voicecall` subcommand: the Deployment's args pick the service (ingress, dedup, …).
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# Build stage: install the package and its runtime dependencies into a self-contained virtualenv.
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
RUN python -m venv /opt/voicecall
COPY pyproject.toml README.md ./
COPY services ./services
COPY schemas ./schemas
# A regular (non-editable) install: the final stage gets the wheel's files, not a link to /src.
RUN /opt/voicecall/bin/pip install --no-cache-dir .
# schemas/ is in the wheel as package data (services/voicecall/schemas links to it).
RUN /opt/voicecall/bin/python -m compileall -q /opt/voicecall/lib \
    && /opt/voicecall/bin/voicecall --help > /dev/null \
    && /opt/voicecall/bin/python -c "from voicecall.ingress.parse import validator; validator('status_push.schema.json'); validator('fee_push.schema.json')"

# Final stage: the same slim base, the virtualenv and nothing else (no compiler, no pip cache, no sources).
FROM ${PYTHON_IMAGE}
RUN groupadd --system --gid 10001 voicecall \
    && useradd --system --uid 10001 --gid voicecall --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin voicecall
COPY --from=build /opt/voicecall /opt/voicecall
# Bytecode is precompiled above: the root filesystem is read-only in Kubernetes.
ENV PATH=/opt/voicecall/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    VOICECALL_LOG_FORMAT=json
WORKDIR /var/lib/voicecall
# Numeric ids so that runAsNonRoot can verify them without reading /etc/passwd.
USER 10001:10001
# 8080: the ingress (HTTP + /metrics); 9100: /metrics, /healthz, /readyz of the consumers.
EXPOSE 8080 9100
ENTRYPOINT ["voicecall"]
CMD ["--help"]
