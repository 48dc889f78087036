"""USD PnL marked to market on total assets, net of every fee (R-M5).

The ledger tracks how trading changed each venue's holdings; PnL is that
change valued at current prices (KRW at the USDT/KRW mid, USDT at 1, a base
asset at its Binance mid). Pre-funded inventory that merely sits there is not
PnL, and KRW is never added to USDT without the FX rate (R-M1).
"""
from __future__ import annotations

from collections import defaultdict

from core.domain.models import Side, Venue


class Ledger:
    __slots__ = ("delta", "fees_by_asset", "fees_usd", "fixed_fees_usd", "max_drawdown", "peak")

    def __init__(self) -> None:
        self.delta: dict[tuple[Venue, str], float] = defaultdict(float)
        self.fees_usd = 0.0
        # Fees charged in an asset other than the quote (Binance: the base of a buy,
        # or BNB), valued in USD at the fill and fixed from then on.
        self.fixed_fees_usd = 0.0
        self.fees_by_asset: dict[tuple[Venue, str], float] = defaultdict(float)
        self.peak = 0.0
        self.max_drawdown = 0.0

    def apply_fill(
        self, venue: Venue, base: str, quote: str, side: Side, qty: float, cost: float,
        fee: float, fx: float, fee_asset: str | None = None, fee_usd: float | None = None,
    ) -> None:
        in_quote = fee_asset in (None, "", quote)
        quote_fee = fee if in_quote else 0.0
        if side is Side.BUY:
            self.delta[(venue, base)] += qty
            self.delta[(venue, quote)] -= cost + quote_fee
        else:
            self.delta[(venue, base)] -= qty
            self.delta[(venue, quote)] += cost - quote_fee
        self.fees_by_asset[(venue, fee_asset or quote)] += fee
        if in_quote:
            self.fees_usd += fee / fx if quote == "KRW" else fee
            return
        if fee_usd is None:
            raise ValueError(f"a fee in {fee_asset} needs its USD value at the fill")
        self.fees_usd += fee_usd
        self.fixed_fees_usd += fee_usd

    def pnl_usd(self, fx_mid: float, base_usd: dict[str, float]) -> float:
        total = -self.fixed_fees_usd
        for (_venue, asset), amount in self.delta.items():
            if asset == "KRW":
                total += amount / fx_mid
            elif asset == "USDT":
                total += amount
            else:
                total += amount * base_usd[asset]
        return total

    def observe(self, pnl: float) -> None:
        """Track max drawdown of the marked-to-market PnL curve."""
        self.peak = max(self.peak, pnl)
        dd = self.peak - pnl
        self.max_drawdown = max(self.max_drawdown, dd)

    def inventory_change(self) -> dict[str, dict[str, float]]:
        out: dict[str, dict[str, float]] = {}
        for (venue, asset), amount in self.delta.items():
            out.setdefault(str(venue), {})[asset] = amount
        return out
