"""The emulator uses the adapters' ccxt config: one definition of how ccxt is pointed."""
from core.venues.ccxt_config import BINANCE_API_PATHS, ccxt_config

__all__ = ["BINANCE_API_PATHS", "ccxt_config"]
