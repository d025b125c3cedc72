"""The S3-compatible store (aiobotocore): a single PUT or a multipart upload, completed only when the file is."""

from __future__ import annotations

import contextlib
import hashlib
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import unquote, urlparse

import orjson

from voicecall.recordings.store.base import SIDECAR, Batcher, Stored, Writer, check_key, from_sidecar, sidecar


class S3Writer:
    """Buffers one part at a time: a single PUT when the file fits in one part, else a multipart upload that is
    invisible until completed (an aborted or crashed upload leaves nothing under the key)."""

    def __init__(self, store: S3Store, key: str, metadata: dict[str, str]) -> None:
        self._store, self._key, self._metadata = store, key, metadata
        self._object = store.object_name(key)
        self._pending: list[bytes] = []
        self._pending_size = 0
        self._hash = hashlib.sha256()
        self._size = 0
        self._upload_id: str | None = None
        self._parts: list[dict[str, Any]] = []
        self._batcher = Batcher(self._consume, store.executor)

    def _consume(self, chunks: list[bytes]) -> None:
        for chunk in chunks:
            self._hash.update(chunk)

    async def write(self, chunk: bytes) -> None:
        self._size += len(chunk)
        self._pending.append(chunk)
        self._pending_size += len(chunk)
        await self._batcher.add(chunk)
        if self._pending_size >= self._store.part_size:
            await self._upload_part()

    async def _upload_part(self) -> None:
        client = self._store.client
        if self._upload_id is None:
            created = await client.create_multipart_upload(Bucket=self._store.bucket, Key=self._object,
                                                           ContentType="audio/wav")
            self._upload_id = created["UploadId"]
        number = len(self._parts) + 1
        # The chunks are joined once here: a growing bytearray copies on every reallocation, a higher peak of
        # memory per transfer (bench/RESULTS.md, Recordings).
        body, self._pending, self._pending_size = b"".join(self._pending), [], 0
        response = await client.upload_part(Bucket=self._store.bucket, Key=self._object, PartNumber=number,
                                            UploadId=self._upload_id, Body=body)
        self._parts.append({"PartNumber": number, "ETag": response["ETag"]})

    async def commit(self) -> Stored:
        await self._batcher.drain()
        client, bucket = self._store.client, self._store.bucket
        stored = Stored(self._key, self._store.uri(self._key), self._size, self._hash.hexdigest())
        if self._upload_id is None:
            await client.put_object(Bucket=bucket, Key=self._object, Body=b"".join(self._pending),
                                    ContentType="audio/wav")
        else:
            if self._pending:
                await self._upload_part()
            await client.complete_multipart_upload(Bucket=bucket, Key=self._object, UploadId=self._upload_id,
                                                   MultipartUpload={"Parts": self._parts})
        self._pending, self._pending_size = [], 0
        await client.put_object(Bucket=bucket, Key=self._object + SIDECAR, Body=sidecar(stored, self._metadata),
                                ContentType="application/json")
        return stored

    async def abort(self) -> None:
        await self._batcher.settle()
        self._pending, self._pending_size = [], 0
        if self._upload_id is not None:
            with contextlib.suppress(Exception):
                await self._store.client.abort_multipart_upload(Bucket=self._store.bucket, Key=self._object,
                                                                UploadId=self._upload_id)


class S3Store:
    """``s3://bucket/prefix`` via aiobotocore; credentials from the usual AWS variables / profile chain."""

    def __init__(self, bucket: str, prefix: str, client: Any, exit_stack: contextlib.AsyncExitStack,
                 part_size: int, threads: int = 20) -> None:
        self.bucket, self.prefix, self.client = bucket, prefix.strip("/"), client
        self.executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="s3store")
        self.part_size = part_size
        self._exit_stack = exit_stack

    @classmethod
    async def open(cls, uri: str, endpoint_url: str | None, region: str, part_size: int, threads: int = 20
                   ) -> S3Store:
        from aiobotocore.config import AioConfig
        from aiobotocore.session import get_session

        parsed = urlparse(uri)
        stack = contextlib.AsyncExitStack()
        client = await stack.enter_async_context(get_session().create_client(
            "s3", endpoint_url=endpoint_url, region_name=region,
            config=AioConfig(s3={"addressing_style": "path"}, retries={"max_attempts": 3, "mode": "standard"})))
        return cls(parsed.netloc, unquote(parsed.path), client, stack, part_size, threads)

    def object_name(self, key: str) -> str:
        key = check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{self.object_name(key)}"

    async def existing(self, key: str) -> Stored | None:
        from botocore.exceptions import ClientError

        name = self.object_name(key)
        try:
            sidecar = await self.client.get_object(Bucket=self.bucket, Key=name + SIDECAR)
            async with sidecar["Body"] as body:
                meta = orjson.loads(await body.read())
            head = await self.client.head_object(Bucket=self.bucket, Key=name)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound"):
                return None
            raise
        except orjson.JSONDecodeError:
            return None
        return from_sidecar(key, self.uri(key), meta, int(head["ContentLength"]))

    async def writer(self, key: str, metadata: dict[str, str]) -> Writer:
        self.object_name(key)
        return S3Writer(self, key, metadata)

    async def close(self) -> None:
        await self._exit_stack.aclose()
        self.executor.shutdown(wait=False)
