#!/usr/bin/env python3
"""make_seed_corpus.py - writes the hand-made seed inputs of the fuzzers:

    corpus/ok_*, corpus/bad_*             safetensors files (header + data)
    corpus_index/ok_*, corpus_index/bad_* model.safetensors.index.json texts

    corpus/ok_dtypes                      a copy of tests/weights/dtypes.safetensors
    (corpus/ok_written_by_safetensors_0_8 was written once by the safetensors
    Python package, save_file, and is kept as it is)

test_fuzz_corpus.c requires ok_* to be accepted and bad_* refused. Inputs the
fuzzer finds later (crashes, once fixed) are added to the same folders under
their libFuzzer names. Any python3 runs this (no packages needed).
"""
import json
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


def safetensors(header, data=b"", length=None):
    text = header if isinstance(header, bytes) else json.dumps(header, separators=(",", ":")).encode()
    return struct.pack("<Q", len(text) if length is None else length) + text + data


def entry(dtype, shape, begin, end):
    return {"dtype": dtype, "shape": shape, "data_offsets": [begin, end]}


HEADERS = {
    "ok_empty": safetensors({}),
    "ok_metadata": safetensors({"__metadata__": {"format": "pt", "note": "caf\u00e9"}}),
    "ok_two_f32": safetensors({"a": entry("F32", [2], 0, 8), "b.c": entry("F32", [1, 1], 8, 12)}, bytes(12)),
    "ok_mixed": safetensors({"h": entry("F16", [3], 0, 6), "b": entry("BF16", [1], 6, 8), "d": entry("F64", [], 8, 16),
                             "i": entry("I64", [1], 16, 24), "z": entry("U8", [0, 5], 24, 24)}, bytes(24)),
    "ok_padded": safetensors(b'{"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}    ', bytes(4)),
    "ok_escaped_name": safetensors({"a\"\\\u00e9\U0001F600": entry("F32", [1], 0, 4)}, bytes(4)),
    "bad_truncated": safetensors({"a": entry("F32", [4], 0, 16)}, bytes(9)),
    "bad_length_past_end": safetensors({}, length=4096),
    "bad_overlap": safetensors({"a": entry("F32", [2], 0, 8), "b": entry("F32", [2], 4, 12)}, bytes(12)),
    "bad_dtype": safetensors({"a": entry("F4", [2], 0, 1)}, bytes(1)),
    "bad_shape_size": safetensors({"a": entry("F32", [3], 0, 8)}, bytes(8)),
    "bad_json": safetensors(b'{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},}', bytes(4)),
    "bad_huge_header": struct.pack("<Q", 100 << 20) + b"{}",
    "bad_short": b"\x02\x00\x00",
}

INDEXES = {
    "ok_index": {"metadata": {"total_size": 12}, "weight_map": {"a": "model-00001-of-00002.safetensors",
                                                                "b": "model-00002-of-00002.safetensors"}},
    "ok_empty_map": {"weight_map": {}},
    "bad_no_map": {"metadata": {}},
    "bad_traversal": {"weight_map": {"a": "../etc/passwd"}},
    "bad_not_string": {"weight_map": {"a": 3}},
}


def main():
    for folder, items in (("corpus", HEADERS), ("corpus_index", INDEXES)):
        os.makedirs(os.path.join(HERE, folder), exist_ok=True)
        for name, content in items.items():
            data = content if isinstance(content, bytes) else (json.dumps(content, indent=1) + "\n").encode()
            with open(os.path.join(HERE, folder, name), "wb") as f:
                f.write(data)
    with open(os.path.join(HERE, "..", "weights", "dtypes.safetensors"), "rb") as source:   # gen_weights.py's
        with open(os.path.join(HERE, "corpus", "ok_dtypes"), "wb") as f:
            f.write(source.read())


if __name__ == "__main__":
    main()
