"""TFRecord framing of event files, with a C CRC32C: how one record is written and read.

A record is, little-endian: uint64 length, uint32 masked CRC32C of those 8
bytes, the payload, uint32 masked CRC32C of the payload (TensorBoard's
RecordWriter writes the same bytes, computing the CRC in pure Python at
about 7 MB/s). The writer frames its events here, load() scans event files
here, and tests find record boundaries here.
"""
import struct
from typing import Iterator, NamedTuple

import google_crc32c

HEADER_BYTES = 12  # length + its CRC
FOOTER_BYTES = 4  # the payload's CRC
_MASK_DELTA = 0xA282EAD8
# Below this a record is written as one joined bytes object (one write call);
# above it the payload is written as it is, without a framed copy.
_JOIN_BELOW = 1 << 20


def masked_crc32c(data) -> int:
    """TFRecord's masked CRC32C (Castagnoli) of data."""
    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def write_record(write, data: bytes):
    """Frame data as one record through write(bytes) (a file's write)."""
    header = struct.pack("<Q", len(data))
    header += struct.pack("<I", masked_crc32c(header))
    footer = struct.pack("<I", masked_crc32c(data))
    if len(data) < _JOIN_BELOW:
        write(header + data + footer)
    else:
        write(header)
        write(data)
        write(footer)


# What scan() found at a record's offset.
OK = "ok"
BAD_PAYLOAD = "payload checksum mismatch"  # a whole record whose payload fails its CRC: skip it
BAD_HEADER = "header checksum mismatch"  # the length cannot be trusted: nothing after it is readable
TORN = "torn"  # the file ends inside this record (a writer stopped mid-record)


class Record(NamedTuple):
    start: int  # offset of the record's first byte
    length: int  # payload bytes (as the header says; 0 for a torn header)
    status: str  # OK, BAD_PAYLOAD, BAD_HEADER or TORN
    payload: bytes = b""  # the payload of a whole record (OK or BAD_PAYLOAD)

    @property
    def payload_start(self) -> int:
        return self.start + HEADER_BYTES

    @property
    def end(self) -> int:
        return self.start + HEADER_BYTES + self.length + FOOTER_BYTES


def scan(data: bytes) -> Iterator[Record]:
    """Every record of a whole file's bytes, in order. Stops after a TORN or
    BAD_HEADER record: no record boundary after it can be trusted."""
    pos, end = 0, len(data)
    while pos < end:
        if end - pos < HEADER_BYTES:
            yield Record(pos, 0, TORN)
            return
        header = data[pos:pos + 8]
        (length,) = struct.unpack("<Q", header)
        (header_crc,) = struct.unpack("<I", data[pos + 8:pos + HEADER_BYTES])
        if masked_crc32c(header) != header_crc:
            yield Record(pos, length, BAD_HEADER)
            return
        record = Record(pos, length, OK)
        if record.end > end:
            yield record._replace(status=TORN)
            return
        start = record.payload_start
        body = data[start:start + length]
        (crc,) = struct.unpack("<I", data[start + length:record.end])
        yield record._replace(payload=body, status=OK if masked_crc32c(body) == crc else BAD_PAYLOAD)
        pos = record.end
