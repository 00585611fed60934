#!/usr/bin/env python3
"""Render a `tmux capture-pane -e` dump (text with SGR colour codes) to a PNG.

Usage: ansi_to_png.py CAPTURE.txt OUT.png [--cols 120] [--rows 36]
Needs Pillow and the DejaVu Sans Mono font (Debian: fonts-dejavu-core).
"""
import argparse
import re

from PIL import Image, ImageDraw, ImageFont

FONT_DIR = "/usr/share/fonts/truetype/dejavu/"
SGR = re.compile(r"\x1b\[([0-9;]*)m")
DEFAULT_FG, DEFAULT_BG = (208, 208, 208), (28, 28, 28)
BASIC = [(0, 0, 0), (205, 49, 49), (13, 188, 121), (229, 229, 16), (36, 114, 200), (188, 63, 188),
         (17, 168, 205), (229, 229, 229), (102, 102, 102), (241, 76, 76), (35, 209, 139), (245, 245, 67),
         (59, 142, 234), (214, 112, 214), (41, 184, 219), (255, 255, 255)]


def palette(n):
    if n < 16:
        return BASIC[n]
    if n < 232:
        n -= 16
        steps = [0, 95, 135, 175, 215, 255]
        return steps[n // 36], steps[(n // 6) % 6], steps[n % 6]
    v = 8 + (n - 232) * 10
    return v, v, v


def parse(text):
    """Yields rows of (char, fg, bg, bold, lines); reverse video is applied (fg and bg swap).

    `lines` is a bit set: 1 underline, 2 strike-through."""
    fg, bg, bold, reverse, underline = DEFAULT_FG, DEFAULT_BG, False, False, 0

    def cell(ch):
        return (ch, bg, fg, bold, underline) if reverse else (ch, fg, bg, bold, underline)

    rows = []
    for line in text.split("\n"):
        row, pos = [], 0
        for m in SGR.finditer(line):
            for ch in line[pos:m.start()]:
                row.append(cell(ch))
            pos = m.end()
            codes = [int(c) if c else 0 for c in m.group(1).split(";")]
            i = 0
            while i < len(codes):
                c = codes[i]
                if c == 0:
                    fg, bg, bold, reverse, underline = DEFAULT_FG, DEFAULT_BG, False, False, 0
                elif c == 1:
                    bold = True
                elif c == 22:
                    bold = False
                elif c == 4:
                    underline |= 1
                elif c == 24:
                    underline &= ~1
                elif c == 9:
                    underline |= 2
                elif c == 29:
                    underline &= ~2
                elif c == 7:
                    reverse = True
                elif c == 27:
                    reverse = False
                elif c in (38, 48) and i + 1 < len(codes):
                    if codes[i + 1] == 2 and i + 4 < len(codes):
                        colour = tuple(codes[i + 2:i + 5])
                        i += 4
                    elif codes[i + 1] == 5 and i + 2 < len(codes):
                        colour = palette(codes[i + 2])
                        i += 2
                    else:
                        colour = DEFAULT_FG if c == 38 else DEFAULT_BG
                    if c == 38:
                        fg = colour
                    else:
                        bg = colour
                elif c == 39:
                    fg = DEFAULT_FG
                elif c == 49:
                    bg = DEFAULT_BG
                elif 30 <= c <= 37:
                    fg = BASIC[c - 30]
                elif 40 <= c <= 47:
                    bg = BASIC[c - 40]
                elif 90 <= c <= 97:
                    fg = BASIC[c - 90 + 8]
                elif 100 <= c <= 107:
                    bg = BASIC[c - 100 + 8]
                i += 1
        for ch in line[pos:]:
            row.append(cell(ch))
        rows.append(row)
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("capture")
    ap.add_argument("out")
    ap.add_argument("--cols", type=int, default=120)
    ap.add_argument("--rows", type=int, default=36)
    args = ap.parse_args()
    size = 15
    regular = ImageFont.truetype(FONT_DIR + "DejaVuSansMono.ttf", size)
    bold_font = ImageFont.truetype(FONT_DIR + "DejaVuSansMono-Bold.ttf", size)
    cw = round(regular.getlength("M"))
    ch = size + 4
    img = Image.new("RGB", (cw * args.cols, ch * args.rows), DEFAULT_BG)
    draw = ImageDraw.Draw(img)
    with open(args.capture, encoding="utf-8", errors="replace") as f:
        rows = parse(f.read())
    for y, row in enumerate(rows[: args.rows]):
        for x, (char, fg, bg, bold, underline) in enumerate(row[: args.cols]):
            box = (x * cw, y * ch, (x + 1) * cw, (y + 1) * ch)
            draw.rectangle(box, fill=bg)
            if char.strip():
                draw.text((x * cw, y * ch + 1), char, fill=fg, font=bold_font if bold else regular)
            if underline & 1:
                draw.line((x * cw, (y + 1) * ch - 2, (x + 1) * cw, (y + 1) * ch - 2), fill=fg)
            if underline & 2:
                draw.line((x * cw, y * ch + ch // 2, (x + 1) * cw, y * ch + ch // 2), fill=fg)
    img.save(args.out)


if __name__ == "__main__":
    main()
