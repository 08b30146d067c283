"""TFRecord framing of event files, with a C CRC32C: how one record is written and read.

A record is, little-endian: uint64 length, uint32 masked CRC32C of those 8
bytes, the payload, uint32 masked CRC32C of the payload (TensorBoard's
RecordWriter writes the same bytes, computing the CRC in pure Python at
about 7 MB/s). The writer frames its events here, load() scans event files
here, and tests find record boundaries here.
"""
import struct
from typing import Iterator, NamedTuple, Optional

import google_crc32c
import numpy as np

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
# A header that fails its CRC (a flipped length byte, a zeroed block): its
# length cannot be trusted, so scan() skips to the next offset where a whole
# record's header and payload checksums both hold, and reads on from there.
BAD_HEADER = "header checksum mismatch"
TORN = "torn"  # the file ends inside this record (a writer stopped mid-record)


class Record(NamedTuple):
    start: int  # offset of the record's first byte
    length: int  # payload bytes as the header says (0 for a torn header); for
    #              BAD_HEADER the bytes skipped to the next whole record (or the end)
    status: str  # OK, BAD_PAYLOAD, BAD_HEADER or TORN
    payload: bytes = b""  # the payload of a whole record (OK or BAD_PAYLOAD)

    @property
    def payload_start(self) -> int:
        return self.start + HEADER_BYTES

    @property
    def end(self) -> int:
        if self.status == BAD_HEADER:
            return self.start + self.length
        return self.start + HEADER_BYTES + self.length + FOOTER_BYTES


def _header_at(data, pos):
    """(payload length, whether the header's CRC holds) of the header at pos."""
    header = data[pos:pos + 8]
    (length,) = struct.unpack("<Q", header)
    (header_crc,) = struct.unpack("<I", data[pos + 8:pos + HEADER_BYTES])
    return length, masked_crc32c(header) == header_crc


def _whole_record_at(data, pos):
    """The OK Record at pos, or None."""
    if len(data) - pos < HEADER_BYTES:
        return None
    length, header_ok = _header_at(data, pos)
    record = Record(pos, length, OK)
    if not header_ok or record.end > len(data):
        return None
    body = data[record.payload_start:record.payload_start + length]
    (crc,) = struct.unpack("<I", data[record.payload_start + length:record.end])
    return record._replace(payload=body) if masked_crc32c(body) == crc else None


# Candidates for resync() are looked for this many offsets at a time.
_RESYNC_CHUNK = 1 << 22
# An Event's first byte: field 1 (wall_time, a double), which every writer sets.
EVENT_FIRST_BYTE = 0x09


def _candidates(data, pos, first_byte):
    """Offsets after pos where a record could start: a length below 4 GiB
    (its four high bytes zero), a header CRC that is not zero, and, when
    first_byte is given, a payload starting with it. Found by numpy a chunk
    at a time: a Python loop over every offset took 41 s for 64 MiB."""
    arr = np.frombuffer(data, np.uint8)
    last = len(arr) - HEADER_BYTES - FOOTER_BYTES  # the last start a record fits at
    for lo in range(pos, last + 1, _RESYNC_CHUNK):
        k = min(_RESYNC_CHUNK, last + 1 - lo)
        seg = arr[lo:lo + k + HEADER_BYTES + FOOTER_BYTES]
        ok = (seg[4:4 + k] | seg[5:5 + k] | seg[6:6 + k] | seg[7:7 + k]) == 0
        ok &= (seg[8:8 + k] | seg[9:9 + k] | seg[10:10 + k] | seg[11:11 + k]) != 0
        if first_byte is not None:
            ok &= seg[12:12 + k] == first_byte
        for i in np.flatnonzero(ok):
            yield lo + int(i)


def resync(data, pos, first_byte=None) -> int:
    """Offset of the first whole record (both CRCs hold) after pos, or len(data)."""
    for start in _candidates(data, pos + 1, first_byte):
        if _whole_record_at(data, start) is not None:
            return start
    return len(data)


def scan(data: bytes, first_byte: Optional[int] = None) -> Iterator[Record]:
    """Every record of a whole file's bytes, in order. A BAD_HEADER record
    covers the bytes skipped to the next whole record (resync; first_byte:
    what every payload starts with, EVENT_FIRST_BYTE for event files, makes
    it quicker); scanning stops after a TORN one (the file ends inside it)."""
    pos, end = 0, len(data)
    while pos < end:
        if end - pos < HEADER_BYTES:
            yield Record(pos, 0, TORN)
            return
        length, header_ok = _header_at(data, pos)
        if not header_ok:
            after = resync(data, pos, first_byte)
            yield Record(pos, after - pos, BAD_HEADER)
            pos = after
            continue
        record = Record(pos, length, OK)
        if record.end > end:
            yield record._replace(status=TORN)
            return
        start = record.payload_start
        body = data[start:start + length]
        (crc,) = struct.unpack("<I", data[start + length:record.end])
        yield record._replace(payload=body, status=OK if masked_crc32c(body) == crc else BAD_PAYLOAD)
        pos = record.end
