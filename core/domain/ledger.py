"""USD PnL on three bases, each venue marked at its own price (R-M5, R-M1).

Definitions (docs/monitoring.md, "Three PnL figures"):

- Marks: KRW at 1 / the USDT/KRW mid (the FX the engine trades at), USDT at 1, a
  base held on Upbit at the Upbit mid / FX, a base held on Binance at the Binance
  mid. Valuing both venues' coins at one price would show the premium's *level* on
  every open hedged position; with each venue at its own price an open position
  shows the premium's *change* since entry, minus costs.
- Strategy PnL: what trading changed in each venue's holdings (fills, fees
  included), valued at the current marks. Fees charged in another asset are fixed
  in USD at the fill.
- Inventory revaluation: the pre-funded holdings (what the venues held before the
  first order) valued now minus valued at the start.
- Total: the change of the whole account's equity = strategy + inventory.

Drawdown is tracked on strategy PnL: it is what the strategy controls; a move of
the coins the desk must hold anyway is reported, not mistaken for a trading loss.
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping

from core.domain.models import Side, Venue

# The USD value of one unit of a base, per venue: {Venue.UPBIT: {"BTC": 101_200.0}, ...}
VenueMarks = Mapping[Venue, Mapping[str, float]]


def unit_usd(venue: Venue, asset: str, fx_mid: float, marks: VenueMarks) -> float:
    """What one unit of `asset` held on `venue` is worth in USD now."""
    if asset == "KRW":
        return 1.0 / fx_mid
    if asset == "USDT":
        return 1.0
    return marks[venue][asset]


class Ledger:
    __slots__ = ("delta", "fees_by_asset", "fees_usd", "fixed_fees_usd", "funding",
                 "funding_start_usd", "max_drawdown", "peak")

    def __init__(self) -> None:
        self.delta: dict[tuple[Venue, str], float] = defaultdict(float)
        self.fees_usd = 0.0
        # Fees charged in an asset other than the quote (Binance: the base of a buy,
        # or BNB), valued in USD at the fill and fixed from then on.
        self.fixed_fees_usd = 0.0
        self.fees_by_asset: dict[tuple[Venue, str], float] = defaultdict(float)
        self.peak = 0.0
        self.max_drawdown = 0.0
        # Pre-funded holdings per (venue, asset) and their USD value at the start.
        self.funding: dict[tuple[Venue, str], float] = {}
        self.funding_start_usd = 0.0

    def fund(self, holdings: Mapping[tuple[Venue, str], float], fx_mid: float,
             marks: VenueMarks) -> None:
        """The holdings the venues had before trading, valued at the start's marks."""
        self.funding = dict(holdings)
        self.funding_start_usd = self._value(self.funding, fx_mid, marks)

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

    @staticmethod
    def _value(holdings: Mapping[tuple[Venue, str], float], fx_mid: float,
               marks: VenueMarks) -> float:
        return sum(amount * unit_usd(venue, asset, fx_mid, marks)
                   for (venue, asset), amount in holdings.items() if amount)

    def pnl_usd(self, fx_mid: float, marks: VenueMarks) -> float:
        """Strategy PnL: trading's change of the holdings, each venue at its own mark."""
        return self._value(self.delta, fx_mid, marks) - self.fixed_fees_usd

    def inventory_pnl_usd(self, fx_mid: float, marks: VenueMarks) -> float:
        """Inventory revaluation: the pre-funded holdings now minus at the start."""
        if not self.funding:
            return 0.0
        return self._value(self.funding, fx_mid, marks) - self.funding_start_usd

    def observe(self, pnl: float) -> None:
        """Track max drawdown of the strategy PnL curve."""
        self.peak = max(self.peak, pnl)
        dd = self.peak - pnl
        self.max_drawdown = max(self.max_drawdown, dd)

    def inventory_change(self) -> dict[str, dict[str, float]]:
        out: dict[str, dict[str, float]] = {}
        for (venue, asset), amount in self.delta.items():
            out.setdefault(str(venue), {})[asset] = amount
        return out
