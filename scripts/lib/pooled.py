"""Pooled percentiles of apibench runs: the HDR histograms saved in each run's recording.json
(V2-deflate + base64, the interval log's encoding) added bucket by bucket, then p50/p99 of
every request of every run — never an average or a median of per-run percentiles.

    python3 scripts/lib/pooled.py RUN_DIR...     # prints requests, p50 µs, p99 µs
"""
import base64
import glob
import json
import struct
import sys
import zlib


def decode(text):
    """An HdrHistogram V2 (deflate) histogram → (counts by index, sub_bucket_half_count_magnitude, unit_magnitude)."""
    raw = base64.b64decode(text)
    cookie, length = struct.unpack(">ii", raw[:8])
    if cookie & ~0xF0 == 0x1C849304 & ~0xF0:  # compressed wrapper
        raw = zlib.decompress(raw[8 : 8 + length])
    cookie, payload_len, _offset, digits, lowest, _highest = struct.unpack(">iiiiqq", raw[:32])
    payload = raw[40 : 40 + payload_len]
    counts, index, i = {}, 0, 0
    while i < len(payload):
        value, shift = 0, 0
        while True:
            byte = payload[i]
            i += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80 or shift >= 63:
                if shift >= 63 and byte >= 0x80:
                    value |= payload[i] << 56
                    i += 1
                break
        value = (value >> 1) ^ -(value & 1)  # zigzag
        if value < 0:
            index += -value
        else:
            if value:
                counts[index] = counts.get(index, 0) + value
            index += 1
    largest = 2 * 10**digits
    sub_bucket_count = 1 << (largest - 1).bit_length()
    return counts, sub_bucket_count.bit_length() - 2, max(lowest, 1).bit_length() - 1


def value_of(index, half_magnitude, unit_magnitude):
    """The highest value equivalent to bucket `index` (what HdrHistogram's quantile returns)."""
    half = 1 << half_magnitude
    bucket = (index >> half_magnitude) - 1
    sub = (index & (half - 1)) + half
    if bucket < 0:
        sub -= half
        bucket = 0
    low = sub << (bucket + unit_magnitude)
    size = 1 << (bucket + unit_magnitude)
    return low + size - 1


def pooled(dirs):
    total, layout = {}, None
    for d in dirs:
        for path in glob.glob(f"{d}/*/recording.json"):
            counts, half, unit = decode(json.load(open(path))["latency"])
            layout = (half, unit)
            for k, v in counts.items():
                total[k] = total.get(k, 0) + v
    n = sum(total.values())
    out = [n]
    for q in (0.50, 0.99):
        target, seen = max(1, round(q * n + 0.5)), 0
        for k in sorted(total):
            seen += total[k]
            if seen >= target:
                out.append(value_of(k, *layout))
                break
    return out


if __name__ == "__main__":
    n, p50, p99 = pooled(sys.argv[1:])
    print(f"{n} {p50} {p99}")
