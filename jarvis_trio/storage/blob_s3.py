"""Blob storage on any S3-compatible object store (``blob_storage_url=s3://bucket/prefix``).

The same rules as on disk (see :mod:`jarvis_trio.storage.blob`), kept with what S3 offers:

* **Atomic.** An S3 ``PUT`` makes the whole object visible at once or not at all; a write cut
  off half-way leaves nothing under the name.
* **Never a silent overwrite.** A new name is created with a conditional put
  (``If-None-Match: *``): if the object exists the store answers 412 and the next sibling
  ``name-2.ext`` is tried, so two writers racing on one name each get their own.
* **Names** are checked by the front before a request is made; the object key is
  ``prefix/name``. Listing is by key prefix.

Object stores have no folders: ``a`` and ``a/b`` may both exist, where the filesystem refuses
the second. Every request runs in a worker thread (the front does that) with a bounded
retry budget (:data:`MAX_RETRIES` retries within :data:`RETRY_TIMEOUT`), so an unreachable
store fails in seconds with a :class:`~jarvis_trio.errors.StorageError` naming the store and
the endpoint, never after the library's default minutes.

Client: obstore (Rust ``object_store`` bindings), called synchronously in worker threads. On
the 64 KB save/read loop against a loopback S3 it measured a 6.6 ms / 7.0 ms p50 against
boto3's 36.6 / 32.2 ms in threads, imports in 3 ms instead of 1.7 s, and implements the
conditional put, retries, and the ``AWS_*`` credential chain. Its async API needs asyncio, so
it is not used from Trio. A hand-written SigV4 client over httpx would avoid the threads but
re-implement request signing, a security-critical piece a maintained library already gets
right.
"""

from __future__ import annotations

import builtins
import os
from collections.abc import Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlsplit

from ..errors import BlobNotFound, BlobTooLarge, StorageError

if TYPE_CHECKING:
    from obstore.store import ClientConfig, RetryConfig

__all__ = ["MAX_RETRIES", "RETRY_TIMEOUT", "S3Backend"]

MAX_RETRIES = 2
"""Retries of one request after a connection error or a 5xx answer."""
RETRY_TIMEOUT = timedelta(seconds=5)
"""Longest time spent retrying one request."""


def _env(environ: Mapping[str, str], *names: str) -> str | None:
    for name in names:
        value = environ.get(name)
        if value:
            return value
    return None


class S3Backend:
    """Objects under ``s3://bucket/prefix``; methods block (run them in a worker thread)."""

    def __init__(
        self,
        url: str,
        *,
        endpoint: str | None = None,
        region: str | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        try:
            import obstore.store
        except ImportError:
            raise StorageError(
                "s3:// blob storage needs obstore: pip install 'jarvis_trio[s3]'"
            ) from None
        parts = urlsplit(url)
        if parts.scheme != "s3" or not parts.netloc:
            raise ValueError(f"blob storage URL {url!r} is not s3://bucket[/prefix]")
        env = os.environ if environ is None else environ
        self.bucket = parts.netloc
        self.prefix = parts.path.strip("/")
        self.endpoint = endpoint or _env(env, "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")
        self.location = f"s3://{self.bucket}/{self.prefix}".rstrip("/")
        where = f" at {self.endpoint}" if self.endpoint else ""
        self.describe = f"S3 blob store {self.location}{where}"
        options: dict[str, Any] = {}
        key_id = _env(env, "AWS_ACCESS_KEY_ID")
        secret = _env(env, "AWS_SECRET_ACCESS_KEY")
        token = _env(env, "AWS_SESSION_TOKEN")
        if key_id and secret:
            options.update(access_key_id=key_id, secret_access_key=secret)
            if token:
                options["token"] = token
        region = region or _env(env, "AWS_REGION", "AWS_DEFAULT_REGION") or "us-east-1"
        client: dict[str, Any] = {"connect_timeout": "2s", "timeout": "30s"}
        if self.endpoint is not None:
            options["endpoint"] = self.endpoint
            client["allow_http"] = self.endpoint.startswith("http://")
        retry = {"max_retries": MAX_RETRIES, "retry_timeout": RETRY_TIMEOUT}
        self._store = obstore.store.S3Store(
            self.bucket,
            region=region,
            client_options=cast("ClientConfig", client),
            retry_config=cast("RetryConfig", retry),
            **options,
        )

    def __repr__(self) -> str:
        return f"S3Backend({self.location!r})"

    def _key(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name

    def _fail(self, action: str, name: str, error: Exception) -> StorageError:
        return StorageError(f"{self.describe}: cannot {action} {name!r}: {error}")

    def put_new(self, name: str, data: bytes) -> bool:
        """Create ``name`` holding ``data``; False (nothing written) when it exists."""
        import obstore
        import obstore.exceptions

        try:
            obstore.put(self._store, self._key(name), data, mode="create")
        except (FileExistsError, obstore.exceptions.AlreadyExistsError):
            return False
        except Exception as error:
            raise self._fail("save", name, error) from error
        return True

    def put_replace(self, name: str, data: bytes) -> None:
        import obstore

        try:
            obstore.put(self._store, self._key(name), data, mode="overwrite")
        except Exception as error:
            raise self._fail("save", name, error) from error

    def get(self, name: str, max_size: int) -> bytes:
        import obstore
        import obstore.exceptions

        try:
            result = obstore.get(self._store, self._key(name))
        except (FileNotFoundError, obstore.exceptions.NotFoundError):
            raise BlobNotFound(f"no blob named {name!r} in {self.location}") from None
        except Exception as error:
            raise self._fail("read", name, error) from error
        size = int(result.meta["size"])
        if size > max_size:
            raise BlobTooLarge(f"blob {name!r} is {size} bytes, over the limit of {max_size} bytes")
        try:
            return bytes(result.bytes())
        except Exception as error:
            raise self._fail("read", name, error) from error

    def exists(self, name: str) -> bool:
        import obstore
        import obstore.exceptions

        try:
            obstore.head(self._store, self._key(name))
        except (FileNotFoundError, obstore.exceptions.NotFoundError):
            return False
        except Exception as error:
            raise self._fail("look up", name, error) from error
        return True

    def delete(self, name: str) -> bool:
        import obstore

        if not self.exists(name):
            return False
        try:
            obstore.delete(self._store, self._key(name))
        except Exception as error:
            raise self._fail("delete", name, error) from error
        return True

    def list(self, prefix: str, limit: int) -> builtins.list[str]:
        import obstore

        start = len(self._key(""))
        # the store lists whole path segments: list the folder, filter by the string prefix
        folder = self._key(prefix).rpartition("/")[0]
        names: builtins.list[str] = []
        over = False
        try:
            for chunk in obstore.list(self._store, prefix=folder or None):
                for item in chunk:
                    name = str(item["path"])[start:]
                    if name.startswith(prefix):
                        names.append(name)
                over = len(names) > limit
                if over:
                    break
        except Exception as error:
            raise self._fail("list", prefix, error) from error
        if over:
            raise StorageError(
                f"more than {limit} blobs start with {prefix!r}: narrow the prefix or pass a "
                "larger limit"
            )
        names.sort()
        return names
