"""JSON texts of a column (e.g. predictions' ``next_actions``) parsed at Arrow's speed."""

from __future__ import annotations

import io
import json

import pyarrow as pa
import pyarrow.json as pajson

JSON_ROWS_PER_BLOCK = 100_000  # rows parse_json_texts hands Arrow's JSON reader at a time (bounds its memory)


def parse_json_texts(texts: list[str | None]) -> pa.Array:
    """JSON texts (one per row; None: null) parsed with Arrow's JSON reader, its types inferred as
    ``pa.array(json.loads(...))`` would: several times faster than parsing them in Python at a million rows.
    Texts spread over several lines (not custseq's), or blocks whose inferred types differ, are parsed in Python,
    which also raises the errors of bad JSON."""
    if any(text is not None and "\n" in text for text in texts):
        return _parsed_in_python(texts)
    chunks: list[pa.Array] = []
    for start in range(0, len(texts), JSON_ROWS_PER_BLOCK):
        block = texts[start : start + JSON_ROWS_PER_BLOCK]
        lines = "\n".join('{"v":' + ("null" if text is None else text) + "}" for text in block).encode()
        options = pajson.ReadOptions(block_size=len(lines) + 1, use_threads=False)
        try:
            chunks += pajson.read_json(io.BytesIO(lines), read_options=options).column("v").chunks
        except pa.ArrowInvalid:
            return _parsed_in_python(texts)
    if not chunks or any(c.type != chunks[0].type for c in chunks):
        return _parsed_in_python(texts)
    return pa.chunked_array(chunks).combine_chunks()


def _parsed_in_python(texts: list[str | None]) -> pa.Array:
    return pa.array([None if text is None else json.loads(text) for text in texts])
