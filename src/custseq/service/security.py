"""API keys: the ``X-API-Key`` header checked in constant time against the SHA-256 hashes in the settings."""

from __future__ import annotations

import hmac
from collections.abc import Callable

from fastapi import HTTPException, Request, status

from custseq.config.service import ServiceSettings, hash_key

API_KEY_HEADER = "X-API-Key"


def key_checker(settings: ServiceSettings) -> Callable[[Request], None]:
    """A FastAPI dependency: 401 without a key, 403 with a wrong one; nothing to check when keys are off."""
    expected = [h.encode() for h in settings.key_hashes]

    def check_key(request: Request) -> None:
        if not expected:
            return
        key = request.headers.get(API_KEY_HEADER)
        if not key:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED, f"missing {API_KEY_HEADER} header", headers={"WWW-Authenticate": "ApiKey"}
            )
        presented = hash_key(key).encode()
        # every stored hash is compared (no early exit), each in constant time
        if not sum(hmac.compare_digest(presented, h) for h in expected):
            raise HTTPException(status.HTTP_403_FORBIDDEN, f"the {API_KEY_HEADER} is not valid")

    return check_key
