"""STOW-RS's reading of a multipart/related body: its delimiters wherever the reading's
chunks cut them, and a part read as a file of its own."""

import io
import random

import pytest

from api.dicomweb import stow

BOUNDARY = b"b0und"
DELIMITER = b"\r\n--" + BOUNDARY


def delimiters_in_the_whole(body):
    """The offsets of every CRLF--boundary, the body read as if it began with CRLF,
    found in the whole at once."""
    data = b"\r\n" + body
    found, offsets = data.find(DELIMITER), []
    while found >= 0:
        offsets.append(found - 2)
        found = data.find(DELIMITER, found + len(DELIMITER))
    return offsets


@pytest.mark.parametrize("chunk", [1, 2, 5, 6, 7, 8, 13, 64, 1024 * 1024])
def test_delimiters_are_found_wherever_a_chunks_edge_cuts_them(monkeypatch, chunk):
    monkeypatch.setattr(stow, "CHUNK", chunk)
    rng = random.Random(chunk)
    # Bodies of the delimiter's own characters: near misses, delimiters back to
    # back, at the start (without CRLF), at the end, cut anywhere.
    alphabet = b"\r\n-b0und"
    pieces = [DELIMITER, b"--" + BOUNDARY, b"\r\n", b"-"]
    found_some = 0
    for _ in range(400):
        body = b"".join(rng.choice(pieces) if rng.random() < 0.3 else bytes([rng.choice(alphabet)])
                        for _ in range(rng.randrange(0, 60)))
        expected = delimiters_in_the_whole(body)
        assert list(stow._delimiters(io.BytesIO(body), DELIMITER)) == expected, body
        found_some += bool(expected)
    assert found_some > 100


def test_a_body_cut_into_parts_at_small_chunks_gives_the_same_parts(monkeypatch):
    parts = [b"first \r\n-- not a boundary", b"", b"third" * 50]
    body = b"".join(b"--" + BOUNDARY + b"\r\nContent-Type: application/dicom\r\n\r\n" + p + b"\r\n" for p in parts)
    body += b"--" + BOUNDARY + b"--\r\n"
    whole = stow.parse(io.BytesIO(body), BOUNDARY)
    monkeypatch.setattr(stow, "CHUNK", 3)
    assert stow.parse(io.BytesIO(body), BOUNDARY) == whole
    assert [body[p.start:p.end] for p in whole] == parts


def test_a_part_reads_as_a_file_of_its_own():
    body = io.BytesIO(b"....HELLO WORLD....")
    reader = stow._PartReader(body, stow.Part({}, 4, 15))
    assert reader.read(5) == b"HELLO"
    assert reader.tell() == 5
    assert reader.read(100) == b" WORLD"
    assert reader.read(1) == b"" and reader.read() == b""
    reader.seek(-5, io.SEEK_END)
    assert reader.read() == b"WORLD"
    buffer = bytearray(4)
    reader.seek(6)
    assert reader.readinto(buffer) == 4 and buffer == b"WORL"
    reader.seek(0)
    assert reader.readall() == b"HELLO WORLD"
    # Read whole a second time (the header's reading, then the storage's): the same bytes, not a copy.
    reader.seek(0)
    first = reader.read(11)
    reader.seek(0)
    assert reader.read(-1) is first
    assert io.BufferedReader(stow._PartReader(body, stow.Part({}, 4, 15)), 4).read() == b"HELLO WORLD"
