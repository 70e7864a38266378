"""archive.tags.normalize, the form matching compares (upper case, no accents, trimmed):
its short way for ASCII text gives what the general way gives."""

import unicodedata

from archive.tags import normalize


def _by_decomposition(text):
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).upper().strip()


def test_ascii_text_is_normalized_as_any_text():
    ascii_texts = [chr(code) for code in range(128)] + ["".join(map(chr, range(start, start + 24)))
                                                        for start in range(0, 128, 5)]
    ascii_texts += ["DOE^JOHN", "  smith^anne  ", "a\tb\n", "x\x00y", "o'brien-jones"]
    for text in ascii_texts:
        assert normalize(text) == _by_decomposition(text), repr(text)
    assert [normalize(text) for text in ("Müller", "ÇAĞLAR", "ﬁle", "José ")] == ["MULLER", "CAGLAR", "FILE", "JOSE"]
    assert normalize("") == normalize(None) == ""
