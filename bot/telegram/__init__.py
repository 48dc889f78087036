"""The Telegram control surface (R-U1, R-O3, R-O5; docs/requirements.md).

Layout: one aiogram Router per command group under `routers/`, wired in one
place (`bot/telegram_app.py`); cross-cutting concerns as middleware
(`middleware.py`: timing, audit, allowlist, the command gate); handler flags
carry the core command table entry, so the role check, the two-step
confirmation, /help and the command menu all derive from `core.commands`.
Handlers never send: they return a `Reply` or, for a command that adds risk,
a `Plan` that only runs once its Confirm button is pressed.
"""
