"""PaperExchange as the emulator's matching engine, plus per-order knobs.

Adds what a venue order needs on top of PaperExchange: a per-order fill ratio
(the partial_fill fault), immediate-or-cancel orders (market orders already are;
limit IOC/FOK are cancelled after their first match), and the quote/base still
reserved by a working order (Upbit's `locked`).
"""

from __future__ import annotations

from core.adapters.paper_exchange import PaperExchange, _Working
from core.domain.models import MarketSnapshot, OrderBook, OrderStatus


class EmuMatchingEngine(PaperExchange):
    fill_ratios: dict[str, float]
    ioc: set[str]

    def setup_emulator(self) -> None:
        self.fill_ratios = {}
        self.ioc = set()

    def reserved(self, order_id: str) -> float:
        work = self._working.get(order_id)
        return work.reserved if work is not None else 0.0

    def is_working(self, order_id: str) -> bool:
        return order_id in self._working

    def _match(self, work: _Working, book: OrderBook, snap: MarketSnapshot) -> None:
        oid = work.order.id
        saved = self.fill_ratio
        self.fill_ratio = self.fill_ratios.get(oid, saved)
        try:
            super()._match(work, book, snap)
        finally:
            self.fill_ratio = saved
        if oid in self.ioc and oid in self._working:
            left = self._working.pop(oid)
            self._release(left.order, left)
            left.order.status = (
                OrderStatus.CLOSED if left.order.remaining <= 0 else OrderStatus.CANCELED
            )
