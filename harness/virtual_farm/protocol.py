"""adb transport framing: the 24-byte message header and the CNXN banner.

Facts (adb protocol.txt): six little-endian u32 fields -- command, arg0, arg1,
data_length, data_check, magic (= command ^ 0xFFFFFFFF). Since version
0x01000001 nobody checks data_check, so we always send 0 and never verify it.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import Enum

HEADER = struct.Struct("<6I")
HEADER_SIZE = HEADER.size  # 24

A_VERSION = 0x01000001  # "skip checksum" version, what adb 29..36 servers send
MAX_PAYLOAD_BYTES = 1024 * 1024  # what modern adbd offers; the link uses min(ours, server's)


class Command(str, Enum):
    """Transport commands; the value is the ASCII spelling the header encodes."""

    CNXN = "CNXN"
    OPEN = "OPEN"
    OKAY = "OKAY"
    CLSE = "CLSE"
    WRTE = "WRTE"
    AUTH = "AUTH"
    STLS = "STLS"
    SYNC = "SYNC"  # obsolete, ignored

    @property
    def code(self) -> int:
        return _CODES[self]


_CODES = {c: int.from_bytes(c.value.encode("ascii"), "little") for c in Command}
_BY_CODE = {code: c for c, code in _CODES.items()}


class ProtocolError(Exception):
    """The peer sent something that is not an adb transport message."""


@dataclass(frozen=True)
class Header:
    command: Command
    arg0: int
    arg1: int
    data_length: int


def encode_header(command: Command, arg0: int, arg1: int, data_length: int) -> bytes:
    code = command.code
    return HEADER.pack(code, arg0, arg1, data_length, 0, code ^ 0xFFFFFFFF)


def decode_header(raw: bytes) -> Header:
    code, arg0, arg1, length, _check, magic = HEADER.unpack(raw)
    if magic != code ^ 0xFFFFFFFF:
        raise ProtocolError(f"bad magic {magic:#010x} for command {code:#010x}")
    command = _BY_CODE.get(code)
    if command is None:
        raise ProtocolError(f"unknown command {code:#010x}")
    return Header(command, arg0, arg1, length)


DEVICE_FEATURES = (
    "shell_v2",
    "cmd",
    "stat_v2",
    "ls_v2",
    "fixed_push_mkdir",
    "fixed_push_symlink_timestamp",
)


def device_banner(product_name: str, model: str, device: str) -> bytes:
    """The CNXN payload adbd sends; `adb devices -l` shows these three props.

    adbd sends no trailing NUL; ';' and '=' are separators so they must not
    appear inside values.
    """
    for value in (product_name, model, device):
        if ";" in value or "=" in value:
            raise ValueError(f"banner value {value!r} contains ';' or '='")
    props = f"ro.product.name={product_name};ro.product.model={model};ro.product.device={device};"
    return f"device::{props}features={','.join(DEVICE_FEATURES)}".encode()
