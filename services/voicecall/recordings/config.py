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
    huawei_base_url: str = Field("https://rtccall.cn-north-1.myhuaweicloud.cn:443", pattern=r"^https?://[^/]+",
                                 description="the record API's APP access address")
    recordings_store: str = Field(".state/recordings", min_length=1,
                                  description="file:///path, a plain path, or s3://bucket/prefix")
    recordings_allowed_hosts: config.CommaList = Field(
        default_factory=list, description="hosts recordings may be downloaded from, comma-separated names or "
                                          "*.suffix (empty: the base URL's host and Huawei Cloud's domains)")
    recordings_concurrency: int = Field(16, ge=1, le=1024, description="parallel downloads")
    recordings_max_pending: int = Field(2000, ge=1, le=1_000_000, description="records held at once, downloading "
                                                                              "or waiting to retry")
    recordings_max_bytes: config.Size = Field(200 * 1000 * 1000, ge=1, description="largest recording accepted")
    recordings_retry_deadline: config.Duration = Field(6 * 3600.0, description="give up on transient failures "
                                                       "after this (and 7 days after the call)")
    recordings_retry_initial: config.Duration = Field(1.0, description="first backoff between attempts (jittered)")
    recordings_retry_max: config.Duration = Field(600.0, description="longest backoff between attempts")
    recordings_connect_timeout: config.Duration = Field(10.0, description="per connection")
    recordings_read_timeout: config.Duration = Field(60.0, description="between two chunks of a download")
    recordings_download_timeout: config.Duration = Field(1800.0, description="one whole attempt: a slow drip "
                                                                             "cannot hold a slot forever")
    recordings_commit_interval: config.Duration = Field(1.0, description="how often offsets are committed")
    recordings_s3_endpoint_url: str | None = Field(None, description="an S3-compatible endpoint (default: AWS)")
    recordings_s3_region: str = Field("us-east-1", description="the S3 region")
    # 5 MiB, the S3 minimum: each transfer in flight buffers one part (plus the SDK's copy of it while sending).
    recordings_s3_part_size: config.Size = Field(5 * 1024 * 1024, ge=5 * 1024 * 1024,
                                                 description="multipart upload part size")

    @field_validator("recordings_store")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        scheme = value.split("://", 1)[0] if "://" in value else "file"
        if scheme not in ("file", "s3"):
            raise ValueError("use file:///path, a plain path, or s3://bucket/prefix")
        if scheme == "s3" and not value[5:].split("/", 1)[0]:
            raise ValueError("s3:// needs a bucket name")
        return value

    def allowed_hosts(self) -> list[str]:
        if self.recordings_allowed_hosts:
            return list(self.recordings_allowed_hosts)
        host = URL(self.huawei_base_url).host
        return [*([host] if host else []), *HUAWEI_DOMAINS]
