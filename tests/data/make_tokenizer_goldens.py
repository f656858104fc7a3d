#!/usr/bin/env python3
"""Writes tests/data/tokenizer/extra_goldens.json: texts the shared goldens do not cover (unicode,
emoji, whitespace runs, contractions, numbers, code, invalid-looking sequences, a long text) with
the ids Hugging Face's `tokenizers` gives for them and its decoding."""
import json
import os

from tokenizers import Tokenizer

here = os.path.dirname(os.path.abspath(__file__))
tok = Tokenizer.from_file(os.path.join(here, "tokenizer", "tokenizer.json"))
texts = [
    "Grüße aus Köln! Ça va? ¿Qué tal? Ελληνικά, русский, 日本語のテキスト、中文。",
    "emoji 😀👍🏽 family 👨‍👩‍👧 flags 🇩🇪🇯🇵 and ❤️",
    "tabs\t\tand\u00a0non-breaking\u2003em-space\u3000ideographic   \n\n  \r\n end  ",
    "I'm sure you're right, they've said we'll see; it's John's and I'd go. DON'T SHOUT'S",
    "Numbers: 3.14159, 1,000,000, 42nd, 2026-11-26, 0x1F, 1e-5, ١٢٣ and ⅕ ²",
    "def f(x):\n    return {'a': [1, 2], \"b\": x ** 2}  # comment\n\tif x != 0: pass",
    "<|endoftext|>Two documents<|endoftext|> joined <|endoftext|>",
    "a" * 300 + " " + "z" * 5,
    "   ",
    "",
    "\u0300combining at start, e\u0301, Hangul 한국어, Thai ภาษาไทย, Devanagari हिन्दी",
    " ".join(["The quick brown fox jumps over the lazy dog."] * 40),
]
out = []
for t in texts:
    ids = tok.encode(t).ids
    out.append({"text": t, "ids": ids, "decoded": tok.decode(ids, skip_special_tokens=False)})
with open(os.path.join(here, "tokenizer", "extra_goldens.json"), "w", encoding="utf-8") as f:
    json.dump(out, f, ensure_ascii=False, indent=1)
print(f"wrote {len(out)} cases")
