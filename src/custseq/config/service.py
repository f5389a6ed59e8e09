"""Settings of the HTTP service (``custseq serve``): who may call it, where it listens, and its limits.

Built from the environment by :meth:`ServiceSettings.from_environment` when the service starts, never at import.
API keys are kept only as SHA-256 hashes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from custseq.errors import ConfigError

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})
ENV_PREFIX = "CUSTSEQ_"
MODEL_ENV = "CUSTSEQ_MODEL"  # the model folder `custseq serve` hands its workers
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class ServiceSettings:
    """Everything ``custseq serve`` and :func:`custseq.service.create_app` read besides the model.

    Environment variables (``CUSTSEQ_`` + the upper-case field name) set them; ``CUSTSEQ_API_KEYS`` holds keys
    comma-separated, ``CUSTSEQ_API_KEY_FILE`` a file of SHA-256 hex digests of keys, one a line.
    """

    key_hashes: tuple[str, ...] = ()  # SHA-256 hex digests of the accepted X-API-Key values; () = keys off
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    max_body_bytes: int = 8_000_000  # a request body above this is refused with 413
    max_customers: int = 1_000  # customers per /score or /embed request
    max_transactions_per_customer: int = 10_000
    max_events_per_customer: int = 10_000
    request_timeout_s: float = 30.0  # a scoring call still running after this answers 503
    threads: int = 1  # DuckDB and torch threads of each worker: requests are small, more workers use more cores

    def __post_init__(self) -> None:
        for name in ("port", "workers", "max_body_bytes", "max_customers", "max_transactions_per_customer",
                     "max_events_per_customer", "threads"):  # fmt: skip
            if getattr(self, name) < 1:
                raise ConfigError(f"service setting {name} must be at least 1, got {getattr(self, name)}")
        if not 0 < self.request_timeout_s <= 3600:
            raise ConfigError(f"request_timeout_s must be in (0, 3600] seconds, got {self.request_timeout_s}")
        if bad := [h for h in self.key_hashes if not _SHA256_HEX.fullmatch(h)]:
            raise ConfigError(f"{len(bad)} API key hash(es) are not 64 lower-case hex digits (SHA-256)")
        if not self.key_hashes and self.host not in LOOPBACK_HOSTS:
            raise ConfigError(
                f"no API keys set and the service would listen on {self.host}: set CUSTSEQ_API_KEYS (comma-separated "
                "keys) or CUSTSEQ_API_KEY_FILE (SHA-256 hashes, one a line), or bind to 127.0.0.1"
            )

    @property
    def keys_required(self) -> bool:
        return bool(self.key_hashes)

    @classmethod
    def from_environment(cls, environ: Mapping[str, str], **overrides: object) -> ServiceSettings:
        """Settings from ``CUSTSEQ_*`` variables; ``overrides`` (e.g. the command line's ``host``) win over them.

        Raises
        ------
        ConfigError
            If a value does not parse, the key file cannot be read, or keys are off on a non-loopback address.
        """
        values: dict[str, object] = {}
        for f in dataclasses.fields(cls):
            text = environ.get(ENV_PREFIX + f.name.upper())
            if text is None or f.name == "key_hashes":
                continue
            values[f.name] = _parsed(f.name, text, str(f.type))
        values["key_hashes"] = _key_hashes(environ)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)  # type: ignore[arg-type]


def hash_key(key: str) -> str:
    """The SHA-256 hex digest a key is stored and compared as."""
    return hashlib.sha256(key.encode()).hexdigest()


def _key_hashes(environ: Mapping[str, str]) -> tuple[str, ...]:
    keys = [k.strip() for k in environ.get(ENV_PREFIX + "API_KEYS", "").split(",") if k.strip()]
    hashes = [hash_key(k) for k in keys]
    if file := environ.get(ENV_PREFIX + "API_KEY_FILE"):
        try:
            lines = Path(file).read_text().splitlines()
        except OSError as e:
            raise ConfigError(f"cannot read CUSTSEQ_API_KEY_FILE {file}: {e.strerror}") from None
        hashes += [line.strip().lower() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    return tuple(dict.fromkeys(hashes))


def _parsed(name: str, text: str, kind: str) -> object:
    try:
        if kind == "int":
            return int(text)
        if kind == "float":
            return float(text)
    except ValueError:
        raise ConfigError(f"{ENV_PREFIX}{name.upper()}={text!r} is not a number") from None
    return text
