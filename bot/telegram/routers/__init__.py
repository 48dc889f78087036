"""One aiogram Router per command group; `bot/telegram_app.py` wires them."""
