"""Event values shown to people: every character visible, none of them taken as markup.

The caller of an AWS API chooses most of what an alert shows (user agent, request
parameters, resource names, and the alert text built from them). A line break in such a
value would start a line that reads like another field of the message ("Principal: admin"),
and bidirectional overrides reorder the text around them on screen. `visible` writes every
such character as an escape, so the reader sees what was sent, and only what was sent.
"""

from __future__ import annotations

# C0 and C1 controls, DEL, line and paragraph separators, bidirectional marks and overrides.
_INVISIBLE = [
    *range(0x00, 0x20),
    *range(0x7F, 0xA0),
    0x2028, 0x2029, 0x200E, 0x200F,
    *range(0x202A, 0x202F),
    *range(0x2066, 0x206A),
]
_SHORT = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
_TABLE = {code: _SHORT.get(chr(code), f"\\u{code:04x}") for code in _INVISIBLE}


def visible(text: str) -> str:
    """`text` with line breaks, other controls and bidi overrides written as escapes."""
    return text.translate(_TABLE)
