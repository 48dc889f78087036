"""Local exchange emulator: Binance spot and Upbit REST subsets on one port,
backed by SimMarket and PaperExchange, for ccxt-level tests and dry runs."""

from bot.drill.emulator.ccxt_config import ccxt_config
from bot.drill.emulator.server import EmulatorHandle, start_emulator

__all__ = ["EmulatorHandle", "ccxt_config", "start_emulator"]
