"""Settings of ``voicecall recordings`` (``VOICECALL_*`` variables, see the interface's Configuration section)."""

from __future__ import annotations

from pydantic import Field, field_validator
from yarl import URL

from voicecall.apps import AppsSettings
from voicecall.runtime import config

# Huawei Cloud's own domains: where recordFileDownloadUrl and the record API's Location point in production.
HUAWEI_DOMAINS = ("*.myhuaweicloud.com", "*.myhuaweicloud.cn", "*.huaweicloud.com", "*.huaweicloud.cn",
                  "*.huaweicaas.com", "*.myhuaweicloud.eu")


class RecordingsSettings(AppsSettings):
    huawei_base_url: str = Field("https://rtccall.cn-north-1.myhuaweicloud.cn:443", pattern=r"^https?://[^/]+")
    recordings_store: str = Field(".state/recordings", min_length=1)
    # Empty = the host of the base URL plus Huawei Cloud's domains (see :func:`allowed_hosts`).
    recordings_allowed_hosts: config.CommaList = Field(default_factory=list)
    recordings_concurrency: int = Field(16, ge=1, le=1024)
    recordings_max_pending: int = Field(2000, ge=1, le=1_000_000)  # records held (downloading or retrying)
    recordings_max_bytes: config.Size = Field(200 * 1000 * 1000, ge=1)
    recordings_retry_deadline: config.Duration = 6 * 3600.0
    recordings_retry_initial: config.Duration = 1.0
    recordings_retry_max: config.Duration = 600.0
    recordings_connect_timeout: config.Duration = 10.0
    recordings_read_timeout: config.Duration = 60.0  # between two chunks
    recordings_download_timeout: config.Duration = 1800.0  # one whole attempt: a slow drip cannot hold a slot forever
    recordings_commit_interval: config.Duration = 1.0
    recordings_s3_endpoint_url: str | None = None
    recordings_s3_region: str = "us-east-1"
    # 5 MiB, the S3 minimum: each transfer in flight buffers one part (plus the SDK's copy of it while sending).
    recordings_s3_part_size: config.Size = Field(5 * 1024 * 1024, ge=5 * 1024 * 1024)

    @field_validator("recordings_store")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        scheme = value.split("://", 1)[0] if "://" in value else "file"
        if scheme not in ("file", "s3"):
            raise ValueError("use file:///path, a plain path, or s3://bucket/prefix")
        if scheme == "s3" and not value[5:].split("/", 1)[0]:
            raise ValueError("s3:// needs a bucket name")
        return value

    def app_secret(self) -> str:
        return self.huawei_app_secret.get_secret_value()

    def allowed_hosts(self) -> list[str]:
        if self.recordings_allowed_hosts:
            return list(self.recordings_allowed_hosts)
        host = URL(self.huawei_base_url).host
        return [*([host] if host else []), *HUAWEI_DOMAINS]
