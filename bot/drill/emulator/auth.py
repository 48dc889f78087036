"""Request authentication exactly as the venues check it.

Binance: HMAC-SHA256 over the raw query/body string before `&signature=`,
X-MBX-APIKEY, timestamp within recvWindow. Upbit: HS256 JWT (stdlib only) with a
SHA-512 query_hash over the params as sent and single-use nonces.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from urllib.parse import parse_qsl, unquote

from bot.drill.emulator.errors import (
    BN_BAD_KEY,
    BN_BAD_SIGNATURE,
    ApiError,
    binance_error,
    upbit_error,
)


# --------------------------------------------------------------------------- Binance
def binance_verify(
    keys: Mapping[str, str],
    api_key: str | None,
    raw_query: str,
    raw_body: str,
    now_ms: int | None = None,
) -> list[tuple[str, str]]:
    """Check a signed Binance request; returns its params (query then body) in order."""
    if not api_key:
        raise binance_error(401, -2014, "API-key format invalid.")
    secret = keys.get(api_key)
    if secret is None:
        raise binance_error(401, -2015, BN_BAD_KEY)
    raw = raw_query + ("&" if raw_query and raw_body else "") + raw_body
    cut = raw.rfind("signature=")
    if cut < 0 or (cut > 0 and raw[cut - 1] != "&"):
        raise binance_error(
            400,
            -1102,
            "Mandatory parameter 'signature' was not sent, was empty/null, or malformed.",
        )
    signed = raw[: cut - 1] if cut > 0 else ""
    given = raw[cut + len("signature=") :].split("&", 1)[0]
    expected = hmac.new(secret.encode(), signed.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, given.lower()):
        raise binance_error(400, -1022, BN_BAD_SIGNATURE)
    params = parse_qsl(signed, keep_blank_values=True)
    fields = dict(params)
    try:
        ts = int(fields["timestamp"])
    except (KeyError, ValueError):
        raise binance_error(
            400,
            -1102,
            "Mandatory parameter 'timestamp' was not sent, was empty/null, or malformed.",
        ) from None
    try:
        recv = int(fields.get("recvWindow", "5000"))
    except ValueError:
        raise binance_error(
            400, -1100, "Illegal characters found in parameter 'recvWindow'."
        ) from None
    if recv > 60000:
        raise binance_error(400, -1131, "recvWindow must be less than 60000")
    server = int(time.time() * 1000) if now_ms is None else now_ms
    if ts > server + 1000:
        raise binance_error(
            400, -1021, "Timestamp for this request was 1000ms ahead of the server's time."
        )
    if server - ts > recv:
        raise binance_error(400, -1021, "Timestamp for this request is outside of the recvWindow.")
    return params


# --------------------------------------------------------------------------- Upbit
def _b64url_decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def _b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwt_hs256(payload: dict[str, object], secret: str) -> str:
    """Make an HS256 token (used by tests to forge requests)."""
    head = _b64url_encode(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = _b64url_encode(json.dumps(payload).encode())
    sig = hmac.new(secret.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{_b64url_encode(sig)}"


def upbit_query_string(method: str, raw_query: str, body: object) -> str:
    """The string Upbit hashes: the decoded query (GET/DELETE) or the JSON body items in order."""
    if method in ("GET", "DELETE") or not isinstance(body, dict):
        return unquote(raw_query)
    parts: list[str] = []
    for k, v in body.items():
        if isinstance(v, bool):
            v = "true" if v else "false"
        elif isinstance(v, list):
            parts.extend(f"{k}={item}" for item in v)
            continue
        parts.append(f"{k}={v}")
    return "&".join(parts)


class UpbitAuth:
    """Verifies Upbit JWTs; remembers nonces per access key (bounded)."""

    def __init__(self, keys: Mapping[str, str], max_nonces: int = 200_000) -> None:
        self._keys = keys
        self._nonces: dict[str, None] = {}
        self._max = max_nonces

    def verify(self, authorization: str | None, hashed: str,
               single_use_nonce: bool = True) -> str:
        """Returns the access key; raises ApiError(401) as the venue would.
        single_use_nonce=False: the nonce must be there but may have been seen (the
        private websocket: ccxt.pro signs once and reconnects with that token)."""
        if not authorization or not authorization.startswith("Bearer "):
            raise upbit_error(401, "no_authorization_token", "Authorization token does not exist.")
        token = authorization[len("Bearer ") :].strip()
        parts = token.split(".")
        if len(parts) != 3:
            raise upbit_error(401, "jwt_verification", "Jwt 토큰 검증에 실패했습니다.")
        try:
            header = json.loads(_b64url_decode(parts[0]))
            payload = json.loads(_b64url_decode(parts[1]))
            sig = _b64url_decode(parts[2])
        except (ValueError, UnicodeDecodeError):
            raise upbit_error(401, "jwt_verification", "Jwt 토큰 검증에 실패했습니다.") from None
        if (
            not isinstance(payload, dict)
            or not isinstance(header, dict)
            or header.get("alg") != "HS256"
        ):
            raise upbit_error(401, "jwt_verification", "Jwt 토큰 검증에 실패했습니다.")
        access = payload.get("access_key")
        if not isinstance(access, str) or access not in self._keys:
            raise upbit_error(401, "invalid_access_key", "잘못된 엑세스 키입니다.")
        secret = self._keys[access]
        expected = hmac.new(
            secret.encode(), f"{parts[0]}.{parts[1]}".encode(), hashlib.sha256
        ).digest()
        if not hmac.compare_digest(expected, sig):
            raise upbit_error(401, "jwt_verification", "Jwt 토큰 검증에 실패했습니다.")
        if hashed:
            want = hashlib.sha512(hashed.encode()).hexdigest()
            if (
                payload.get("query_hash") != want
                or payload.get("query_hash_alg", "SHA512") != "SHA512"
            ):
                raise upbit_error(
                    401, "invalid_query_payload", "JWT 페이로드의 쿼리가 일치하지 않습니다."
                )
        nonce = payload.get("nonce")
        if not isinstance(nonce, str) or not nonce:
            raise upbit_error(401, "jwt_verification", "Jwt 토큰 검증에 실패했습니다.")
        if not single_use_nonce:
            return access
        key = f"{access}:{nonce}"
        if key in self._nonces:
            raise upbit_error(401, "nonce_used", "이미 요청한 nonce값이 다시 사용되었습니다.")
        self._nonces[key] = None
        if len(self._nonces) > self._max:
            for old in list(self._nonces)[: self._max // 10]:
                del self._nonces[old]
        return access


__all__ = ["ApiError", "UpbitAuth", "binance_verify", "jwt_hs256", "upbit_query_string"]
