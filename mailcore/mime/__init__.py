"""Message parsing and building: line ends, envelope, body structure with byte offsets, decoding."""
from mailcore.mime.parse import ParsedMessage, decode_transfer_encoding, parse_message, to_crlf

__all__ = ["ParsedMessage", "decode_transfer_encoding", "parse_message", "to_crlf"]
