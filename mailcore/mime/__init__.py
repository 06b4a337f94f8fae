"""Message parsing and building: line ends, envelope, body structure with byte offsets, decoding."""
from mailcore.mime.parse import ParsedMessage, decode_transfer_encoding, parse_message, part_filename, to_crlf
from mailcore.mime.text import (
    Attachment,
    attachments,
    decoded_body,
    display_parts,
    extract_text,
    html_to_text,
    part_at,
    part_text,
    snippet,
    walk,
)

__all__ = [
    "Attachment", "ParsedMessage", "attachments", "decode_transfer_encoding", "decoded_body", "display_parts",
    "extract_text", "html_to_text", "parse_message", "part_at", "part_filename", "part_text", "snippet",
    "to_crlf", "walk",
]
