# One image for every `voicecall` subcommand: the Deployment's args pick the service (ingress, dedup, …).
# `docker build .` uses the official slim base and PyPI; deploy/image/build.sh (`make image`) builds the same file
# without a registry or network: a Debian base of its own and a wheelhouse (see docs/operations.md).
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# An optional wheelhouse: `--build-context wheels=DIR` overrides this empty stage, and pip then installs from DIR
# only (every dependency and the build backend as wheels); without it pip reads the package index.
FROM scratch AS wheels

# Build stage: install the package and its runtime dependencies into a self-contained virtualenv.
FROM ${PYTHON_IMAGE} AS build
LABEL org.opencontainers.image.title=voicecall-pipeline
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
RUN python -m venv /opt/voicecall
# The dependencies first, from pyproject.toml alone: a change to the sources reuses this layer. The tracing extra
# too: OTEL_* set in a Deployment turns tracing on (docs/operations.md).
COPY pyproject.toml ./
RUN --mount=type=bind,from=wheels,target=/wheels \
    if [ -n "$(ls -A /wheels)" ]; then export PIP_NO_INDEX=1 PIP_FIND_LINKS=/wheels; fi \
    && python -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; \
print(*p['dependencies'], *p['optional-dependencies']['tracing'], sep='\n')" \
       > requirements.txt \
    && /opt/voicecall/bin/pip install --no-cache-dir -r requirements.txt
COPY README.md ./
COPY services ./services
COPY schemas ./schemas
# A regular (non-editable) install: the final stage gets the wheel's files, not a link to /src.
RUN --mount=type=bind,from=wheels,target=/wheels \
    if [ -n "$(ls -A /wheels)" ]; then export PIP_NO_INDEX=1 PIP_FIND_LINKS=/wheels; fi \
    && /opt/voicecall/bin/pip install --no-cache-dir --no-deps . \
    && /opt/voicecall/bin/pip uninstall --yes pip setuptools
# schemas/ is in the wheel as package data (services/voicecall/schemas links to it).
RUN /opt/voicecall/bin/python -m compileall -q /opt/voicecall/lib \
    && /opt/voicecall/bin/voicecall --help > /dev/null \
    && /opt/voicecall/bin/python -c "from voicecall.ingress.parse import validator; validator('status_push.schema.json'); validator('fee_push.schema.json')"

# Final stage: the same base, the virtualenv and nothing else (no compiler, no pip, no sources).
FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title=voicecall-pipeline \
      org.opencontainers.image.description="Huawei Cloud Voice Call event pipeline: one image, every voicecall command" \
      org.opencontainers.image.licenses=Apache-2.0
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
