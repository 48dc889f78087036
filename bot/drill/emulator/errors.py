"""Venue-shaped error responses, raised from handlers as ApiError."""

from __future__ import annotations

import json

from aiohttp import web


class ApiError(Exception):
    """An HTTP error response a handler (or the middleware) returns to the client."""

    def __init__(
        self,
        status: int,
        body: str,
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
        label: str = "",
    ) -> None:
        super().__init__(f"{status} {label or body[:80]}")
        self.status = status
        self.body = body
        self.content_type = content_type
        self.headers = dict(headers or {})
        self.label = label  # short code for the order log, e.g. "-2010" or "under_min_total_bid"

    def response(self) -> web.Response:
        return web.Response(
            status=self.status,
            text=self.body,
            content_type=self.content_type,
            headers=self.headers,
        )


def binance_error(
    status: int, code: int, msg: str, headers: dict[str, str] | None = None
) -> ApiError:
    return ApiError(
        status, json.dumps({"code": code, "msg": msg}), headers=headers, label=str(code)
    )


def upbit_error(status: int, name: str, message: str) -> ApiError:
    body = json.dumps({"error": {"name": name, "message": message}}, ensure_ascii=False)
    return ApiError(status, body, label=name)


def plain_error(status: int, text: str, headers: dict[str, str] | None = None) -> ApiError:
    return ApiError(
        status, text, content_type="text/plain", headers=headers, label=f"http_{status}"
    )


# Binance messages ccxt maps.
BN_INSUFFICIENT = "Account has insufficient balance for requested action."
BN_UNKNOWN_ORDER = "Unknown order sent."
BN_NO_SUCH_ORDER = "Order does not exist."
BN_BAD_SIGNATURE = "Signature for this request is not valid."
BN_BAD_KEY = "Invalid API-key, IP, or permissions for action."
BN_DUPLICATE = "Duplicate order sent."


def bn_insufficient() -> ApiError:
    return binance_error(400, -2010, BN_INSUFFICIENT)


def up_insufficient(side: str, currency: str) -> ApiError:
    return upbit_error(
        400, f"insufficient_funds_{side}", f"주문가능한 금액({currency})이 부족합니다."
    )


def up_not_found() -> ApiError:
    return upbit_error(404, "order_not_found", "주문을 찾지 못했습니다.")


def up_validation(message: str) -> ApiError:
    return upbit_error(400, "validation_error", message)


def not_found_json(path: str) -> web.Response:
    return web.json_response({"error": "not_found", "path": path}, status=404)
