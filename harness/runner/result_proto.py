"""BenchmarkResult message classes, built at run time from benchmark_result.proto.

One copy of the schema (the upstream .proto) and no generated _pb2 module: a
generated module pins a protobuf runtime version, while descriptors built here
work with whatever protobuf the device's Python has. The parser knows exactly
the proto2 subset that file uses (syntax, package, option, comments, messages
of `optional` scalar or message fields) and rejects anything else loudly, so a
future upstream copy with new syntax fails here rather than mis-reading data.
"""

from __future__ import annotations

import functools
import re
from importlib import resources

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import Message

PROTO_FILE = "benchmark_result.proto"

_F = descriptor_pb2.FieldDescriptorProto
_SCALARS = {
    "double": _F.TYPE_DOUBLE,
    "float": _F.TYPE_FLOAT,
    "int64": _F.TYPE_INT64,
    "uint64": _F.TYPE_UINT64,
    "int32": _F.TYPE_INT32,
    "uint32": _F.TYPE_UINT32,
    "sint32": _F.TYPE_SINT32,
    "sint64": _F.TYPE_SINT64,
    "bool": _F.TYPE_BOOL,
    "string": _F.TYPE_STRING,
    "bytes": _F.TYPE_BYTES,
}
_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
_TOKEN = re.compile(r'\s*(?:("(?:[^"\\]|\\.)*")|(' + _IDENT + r"(?:\." + _IDENT + r")*)|(\d+)|([{};=]))")
_COMMENT = re.compile(r"//[^\n]*")


class ProtoSyntaxError(ValueError):
    """The .proto text uses something outside the supported proto2 subset."""


def parse_proto(text: str, name: str = PROTO_FILE) -> descriptor_pb2.FileDescriptorProto:
    """The FileDescriptorProto of `text`; raises ProtoSyntaxError on anything unsupported."""
    tokens = _tokenize(_COMMENT.sub("", text))
    out = descriptor_pb2.FileDescriptorProto(name=name)
    messages: list[descriptor_pb2.DescriptorProto] = []
    pos = 0

    def take(expected: str | None = None) -> str:
        nonlocal pos
        if pos >= len(tokens):
            raise ProtoSyntaxError(f"unexpected end of {name}" + (f", expected {expected!r}" if expected else ""))
        token = tokens[pos]
        if expected is not None and token != expected:
            raise ProtoSyntaxError(f"{name}: expected {expected!r}, found {token!r}")
        pos += 1
        return token

    while pos < len(tokens):
        keyword = take()
        if keyword == "syntax":
            take("=")
            syntax = take().strip('"')
            if syntax != "proto2":
                raise ProtoSyntaxError(f"{name}: only proto2 is supported, not {syntax!r}")
            out.syntax = syntax
            take(";")
        elif keyword == "package":
            out.package = take()
            take(";")
        elif keyword == "option":
            # File options (java_package, ...) do not change the wire format.
            take(), take("="), take(), take(";")
        elif keyword == "message":
            message = descriptor_pb2.DescriptorProto(name=_identifier(take(), name))
            take("{")
            while tokens[pos : pos + 1] != ["}"]:
                message.field.append(_field(take, name))
            take("}")
            messages.append(message)
        else:
            raise ProtoSyntaxError(f"{name}: unsupported statement {keyword!r}")
    known = {message.name for message in messages}
    for message in messages:
        for field in message.field:
            if field.type == _F.TYPE_MESSAGE:
                if field.type_name not in known:
                    raise ProtoSyntaxError(f"{name}: unknown type {field.type_name!r} in {message.name}")
                field.type_name = f".{out.package}.{field.type_name}" if out.package else f".{field.type_name}"
    out.message_type.extend(messages)
    return out


def _tokenize(text: str) -> list[str]:
    tokens: list[str] = []
    text = text.rstrip()
    pos = 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if not match:
            raise ProtoSyntaxError(f"unsupported text: {text[pos : pos + 40].strip()!r}")
        tokens.append(match.group(match.lastindex or 0))
        pos = match.end()
    return tokens


def _identifier(token: str, name: str) -> str:
    if not re.fullmatch(_IDENT, token):
        raise ProtoSyntaxError(f"{name}: {token!r} is not a name")
    return token


def _field(take, name: str) -> descriptor_pb2.FieldDescriptorProto:  # type: ignore[no-untyped-def]
    label = take()
    if label != "optional":
        raise ProtoSyntaxError(f"{name}: unsupported field label {label!r} (only 'optional')")
    type_name = take()
    field_name = _identifier(take(), name)
    take("=")
    number = take()
    if not number.isdigit():
        raise ProtoSyntaxError(f"{name}: field {field_name} needs a number, found {number!r}")
    take(";")
    field = _F(name=field_name, number=int(number), label=_F.LABEL_OPTIONAL)
    if type_name in _SCALARS:
        field.type = _SCALARS[type_name]
    else:
        field.type = _F.TYPE_MESSAGE
        field.type_name = _identifier(type_name, name)
    return field


@functools.cache
def message_classes() -> dict[str, type[Message]]:
    """Short message name -> class, built from the .proto shipped beside this module.

    Read through the package loader so that it also works inside the runner's zipapp.
    """
    text = resources.files(__package__).joinpath(PROTO_FILE).read_text(encoding="utf-8")
    file_proto = parse_proto(text)
    # A private pool: never clashes with another copy of the same names in the default pool.
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file_proto)
    prefix = f"{file_proto.package}." if file_proto.package else ""
    return {
        message.name: message_factory.GetMessageClass(pool.FindMessageTypeByName(prefix + message.name))
        for message in file_proto.message_type
    }


def benchmark_result_class() -> type[Message]:
    return message_classes()["BenchmarkResult"]
