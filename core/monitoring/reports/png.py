"""A tiny pure-Python PNG canvas: pixels, lines, rectangles, a 3x5 digit font.

Report charts are drawn here instead of with a plotting library, so the
service never carries matplotlib (~60 MB) in its memory for two charts a day;
rendering runs in a worker thread (zlib releases the GIL while compressing).
"""
from __future__ import annotations

import struct
import zlib

Color = tuple[int, int, int]

WHITE: Color = (255, 255, 255)
BLACK: Color = (0, 0, 0)
GREY: Color = (200, 200, 200)
DARK: Color = (90, 90, 90)
GREEN: Color = (30, 150, 60)
RED: Color = (200, 40, 40)
BLUE: Color = (40, 90, 200)

# 3x5 glyphs, rows top to bottom, bits left to right.
_FONT: dict[str, tuple[int, ...]] = {
    "0": (7, 5, 5, 5, 7), "1": (2, 6, 2, 2, 7), "2": (7, 1, 7, 4, 7), "3": (7, 1, 7, 1, 7),
    "4": (5, 5, 7, 1, 1), "5": (7, 4, 7, 1, 7), "6": (7, 4, 7, 5, 7), "7": (7, 1, 1, 1, 1),
    "8": (7, 5, 7, 5, 7), "9": (7, 5, 7, 1, 7), "-": (0, 0, 7, 0, 0), "+": (0, 2, 7, 2, 0),
    ".": (0, 0, 0, 0, 2), ":": (0, 2, 0, 2, 0), " ": (0, 0, 0, 0, 0),
    "$": (3, 6, 2, 3, 6), "/": (1, 1, 2, 4, 4),
}


class Canvas:
    def __init__(self, width: int, height: int, background: Color = WHITE) -> None:
        if width <= 0 or height <= 0:
            raise ValueError("canvas size must be positive")
        self.width = width
        self.height = height
        self.px = bytearray(bytes(background) * (width * height))

    def set(self, x: int, y: int, color: Color) -> None:
        if 0 <= x < self.width and 0 <= y < self.height:
            i = 3 * (y * self.width + x)
            self.px[i:i + 3] = bytes(color)

    def get(self, x: int, y: int) -> Color:
        i = 3 * (y * self.width + x)
        return self.px[i], self.px[i + 1], self.px[i + 2]

    def rect(self, x0: int, y0: int, x1: int, y1: int, color: Color) -> None:
        """Filled rectangle between two corners (inclusive, any order)."""
        xa, xb = sorted((max(x0, 0), min(x1, self.width - 1)))
        ya, yb = sorted((y0, y1))
        ya, yb = max(ya, 0), min(yb, self.height - 1)
        if xa > xb or ya > yb:
            return
        row = bytes(color) * (xb - xa + 1)
        for y in range(ya, yb + 1):
            i = 3 * (y * self.width + xa)
            self.px[i:i + len(row)] = row

    def line(self, x0: int, y0: int, x1: int, y1: int, color: Color, dash: int = 0) -> None:
        """Bresenham; `dash` > 0 draws dash-pixel on/off segments."""
        dx, dy = abs(x1 - x0), -abs(y1 - y0)
        sx, sy = (1 if x0 < x1 else -1), (1 if y0 < y1 else -1)
        err, n = dx + dy, 0
        while True:
            if not dash or (n // dash) % 2 == 0:
                self.set(x0, y0, color)
            n += 1
            if x0 == x1 and y0 == y1:
                return
            e2 = 2 * err
            if e2 >= dy:
                err += dy
                x0 += sx
            if e2 <= dx:
                err += dx
                y0 += sy

    def text(self, x: int, y: int, s: str, color: Color = BLACK, scale: int = 2) -> int:
        """Draw digits and a few signs; returns the x after the text."""
        for ch in s:
            glyph = _FONT.get(ch, _FONT[" "])
            for r, bits in enumerate(glyph):
                for c in range(3):
                    if bits & (4 >> c):
                        self.rect(x + c * scale, y + r * scale, x + c * scale + scale - 1,
                                  y + r * scale + scale - 1, color)
            x += 4 * scale
        return x

    def png(self) -> bytes:
        raw = bytearray()
        stride = 3 * self.width
        for y in range(self.height):
            raw.append(0)  # filter: none
            raw += self.px[y * stride:(y + 1) * stride]

        def chunk(kind: bytes, data: bytes) -> bytes:
            return (struct.pack(">I", len(data)) + kind + data
                    + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

        ihdr = struct.pack(">IIBBBBB", self.width, self.height, 8, 2, 0, 0, 0)
        return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
                + chunk(b"IDAT", zlib.compress(bytes(raw), 6)) + chunk(b"IEND", b""))
