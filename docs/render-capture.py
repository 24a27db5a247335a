#!/usr/bin/env python3
"""Renders a `tmux capture-pane -e -p` text (ANSI colours kept) as an SVG.

Usage: render-capture.py CAPTURE.txt > OUT.svg
then, for a PNG: rsvg-convert OUT.svg -o OUT.png (Debian: librsvg2-bin).
Knows what our captures use: reset, bold, the 8 + 8 bright foreground
colours and the defaults; other codes are ignored.
"""
import re
import sys
from xml.sax.saxutils import escape

FONT_PX = 14
CELL_W = FONT_PX * 0.602  # DejaVu Sans Mono advance width
CELL_H = FONT_PX * 1.3
PAD = 12
BG = "#1e1e1e"
FG = "#d4d4d4"
COLOURS = ["#000000", "#cd3131", "#0dbc79", "#e5e510",
           "#2472c8", "#bc3fbc", "#11a8cd", "#e5e5e5"]
BRIGHT = ["#666666", "#f14c4c", "#23d18b", "#f5f543",
          "#3b8eea", "#d670d6", "#29b8db", "#ffffff"]
SGR = re.compile(r"\x1b\[([0-9;]*)m")


def spans(line):
    """(column, text, colour, bold) runs of one captured line."""
    fg, bold, col, out, pos = FG, False, 0, [], 0
    for m in list(SGR.finditer(line)) + [None]:
        end = m.start() if m else len(line)
        text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", line[pos:end])
        if text:
            out.append((col, text, fg, bold))
            col += len(text)
        if not m:
            break
        pos = m.end()
        for code in [int(c) if c else 0 for c in m.group(1).split(";")]:
            if code == 0:
                fg, bold = FG, False
            elif code == 1:
                bold = True
            elif code == 22:
                bold = False
            elif 30 <= code <= 37:
                fg = COLOURS[code - 30]
            elif 90 <= code <= 97:
                fg = BRIGHT[code - 90]
            elif code == 39:
                fg = FG
    return out


def main():
    lines = open(sys.argv[1], encoding="utf-8").read().rstrip("\n ").split("\n")
    cols = max((sum(len(t) for _, t, _, _ in spans(l)) for l in lines), default=1)
    width = int(2 * PAD + cols * CELL_W)
    height = int(2 * PAD + len(lines) * CELL_H)
    print(f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
          f'font-family="DejaVu Sans Mono, monospace" font-size="{FONT_PX}">')
    print(f'<rect width="100%" height="100%" fill="{BG}" rx="6"/>')
    for row, line in enumerate(lines):
        y = PAD + (row + 0.8) * CELL_H
        for col, text, fg, bold in spans(line):
            # One <text> per character keeps every glyph on its terminal cell.
            for k, ch in enumerate(text):
                if ch == " ":
                    continue
                x = PAD + (col + k) * CELL_W
                weight = ' font-weight="bold"' if bold else ""
                print(f'<text x="{x:.1f}" y="{y:.1f}" fill="{fg}"{weight}>{escape(ch)}</text>')
    print("</svg>")


if __name__ == "__main__":
    main()
