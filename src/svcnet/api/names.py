"""Names generated from ``metadata.generateName``, as kube-apiserver generates them.

Upstream (apiserver storage/names) keeps at most 58 characters of the base and appends five
characters from an alphabet without vowels or easily confused digits, so a generated name never
spells a word and always fits the 63-character DNS label limit.
"""

from __future__ import annotations

import secrets

# apimachinery util/rand: no vowels (no accidental words), no 0/1/3 (look like o/l/e).
SUFFIX_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
SUFFIX_LENGTH = 5
MAX_NAME_LENGTH = 63
MAX_GENERATED_BASE_LENGTH = MAX_NAME_LENGTH - SUFFIX_LENGTH  # 58


def random_suffix(length: int = SUFFIX_LENGTH) -> str:
    return "".join(secrets.choice(SUFFIX_ALPHABET) for _ in range(length))


def generate_name(base: str) -> str:
    """``base`` cut to 58 characters plus a random 5-character suffix."""
    return base[:MAX_GENERATED_BASE_LENGTH] + random_suffix()
