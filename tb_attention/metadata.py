"""Plugin name, format version and the SummaryMetadata of attention tags: made for writers, checked for readers.

The format itself is written down in proto/attention.proto. Writers put
create_summary_metadata() on every attention value; the plugin checks each
tag's with parse_plugin_metadata() when it lists tags (tb_attention.store).
"""
from tensorboard.compat.proto import summary_pb2

from tb_attention.proto import attention_pb2

PLUGIN_NAME = "attention"

# Version of the StepHeader / blob layout. Bump it when the layout changes and
# keep readers able to load every older version (tests/fixtures holds samples).
# 1: one blob per stored layer. 2: a layer larger than codec.LAYER_BLOB_BYTES
# is stored as blobs of whole heads (Kind.heads_per_blob); the writer still
# writes version 1 for steps that split no layer. 3: neurons with logit
# soft-capping or attention sinks (NeuronLayer.softcap, .sinks), which an
# older reader would ignore and so recompute other numbers; only steps that
# use them are written as version 3. 4: payloads compressed
# (BlobRef.compression, .raw_length; zstd, or zlib): every step with a
# compressed blob; also grouped keys stored once per key head
# (Kind.key_heads), which an older reader would size wrongly.
FORMAT_VERSION = 4


class FormatError(ValueError):
    """Logged data that cannot be decoded: corrupt, truncated or too new."""


def create_summary_metadata(description=""):
    content = attention_pb2.AttentionPluginData(version=FORMAT_VERSION)
    return summary_pb2.SummaryMetadata(
        summary_description=description,
        plugin_data=summary_pb2.SummaryMetadata.PluginData(
            plugin_name=PLUGIN_NAME, content=content.SerializeToString()
        ),
        # Without data_class both of TensorBoard's loaders drop the data.
        data_class=summary_pb2.DATA_CLASS_BLOB_SEQUENCE,
    )


def parse_plugin_metadata(content):
    if not isinstance(content, bytes):
        raise TypeError("plugin content must be bytes, got %s" % type(content).__name__)
    try:
        data = attention_pb2.AttentionPluginData.FromString(content)
    except Exception as e:  # protobuf raises DecodeError, a bare Exception subclass
        raise FormatError("attention plugin metadata is not decodable: %s" % e) from e
    if data.version > FORMAT_VERSION:
        raise FormatError(
            "attention data of format version %d is newer than this tb-attention "
            "(reads up to %d): upgrade tb-attention" % (data.version, FORMAT_VERSION)
        )
    return data


# TensorBoard's default loader, the Rust data server, cannot read a blob of
# a run or tag whose name has one of these: its blob keys are JSON it parses
# into borrowed strings, and a string that needs an escape is not one
# ("failed to parse blob key: ... expected a borrowed string"). The Python
# loader reads them; the writer refuses them, so that both loaders show the data.
_NAME_BREAKERS = frozenset('"\\') | frozenset(chr(c) for c in range(0x20))


def name_breakers(name):
    """The characters of name the Rust data server cannot read a blob under, as repr()s."""
    return sorted({repr(c) for c in name if c in _NAME_BREAKERS})
