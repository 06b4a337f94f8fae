"""The parser over the whole corpus, and exact structures for known messages."""
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailcore.mime import decode_transfer_encoding, parse_message, to_crlf
from mailcore.mime import parse as parse_module
from mailcore.mime import text as text_module
from mailcore.mime.parse import part_filename
from mailcore.mime.text import extract_text, html_to_text, part_text, snippet
from mailcore.mime.text import walk as leaves
from tests.conftest import CORPUS_DIR, corpus_files


def walk(part):
    yield part
    for child in part.get("parts", []):
        yield from walk(child)
    if "message" in part:
        yield from walk(part["message"]["body"])


@pytest.mark.parametrize("path", corpus_files(), ids=lambda p: str(p.relative_to(CORPUS_DIR)))
def test_every_corpus_message_parses_with_consistent_offsets(path):
    raw = to_crlf(path.read_bytes())
    parsed = parse_message(raw)
    root = parsed.bodystructure
    assert root["header_start"] == 0 and root["end"] == len(raw)
    for part in walk(root):
        assert part["header_start"] <= part["header_end"] <= part["body_start"] <= part["end"] <= len(raw)
        assert part["size"] == part["end"] - part["body_start"]
        for child in part.get("parts", []):
            assert part["body_start"] <= child["header_start"] and child["end"] <= part["end"]
    assert set(parsed.envelope) == {
        "date", "subject", "from", "sender", "reply_to", "to", "cc", "bcc", "in_reply_to", "message_id"
    }


def test_to_crlf_changes_only_line_ends():
    assert to_crlf(b"a\nb\r\nc\rd\n") == b"a\r\nb\r\nc\rd\r\n"


def test_multipart_with_pdf_attachment_structure():
    raw = to_crlf((CORPUS_DIR / "attachment_emails/attachment_pdf.eml").read_bytes())
    parsed = parse_message(raw)
    root = parsed.bodystructure
    assert (root["type"], root["subtype"]) == ("multipart", "mixed")
    kinds = [(p["type"], p["subtype"], p["disposition"]) for p in root["parts"]]
    assert kinds == [("text", "plain", ["inline", []]), ("application", "pdf", ["attachment", [["filename", "broken.pdf"]]])]
    pdf = root["parts"][1]
    body = decode_transfer_encoding(raw[pdf["body_start"] : pdf["end"]], pdf["encoding"])
    assert body.startswith(b"%PDF")
    assert part_filename(pdf) == "broken.pdf"
    assert parsed.has_attachments
    assert parsed.subject == "Another PDF with 🎉 Unicode chars in it 🍿"
    assert parsed.sender == "Test Tester <xxxx@xxxx.com>"


def test_body_part_offsets_slice_exact_bytes():
    raw = (
        b"Content-Type: multipart/alternative; boundary=\"XX\"\r\n\r\npreamble\r\n--XX\r\n"
        b"Content-Type: text/plain\r\n\r\nhello\r\n--XX  \r\nContent-Type: text/html\r\n\r\n<b>hi</b>\r\n--XX--\r\nepilogue\r\n"
    )
    root = parse_message(raw).bodystructure
    text, html = root["parts"]
    assert raw[text["body_start"] : text["end"]] == b"hello"
    assert raw[html["body_start"] : html["end"]] == b"<b>hi</b>"
    assert raw[text["header_start"] : text["header_end"]] == b"Content-Type: text/plain\r\n"


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\r\n",
        b"no header at all",
        b"Content-Type: multipart/mixed\r\n\r\nno boundary",
        b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nunterminated",
        b"Content-Type: garbage\r\n\r\nbody",
        b"Content-Type: message/rfc822\r\n\r\n",
        b"Subject: =?utf-8?B?broken\r\nFrom: <<<@@@>>>\r\nDate: yesterday\r\n\r\nx",
        b"Content-Type: multipart/mixed; boundary=a\r\n\r\n" + b"--a\r\nContent-Type: multipart/mixed; boundary=a\r\n\r\n" * 200,
    ],
)
def test_hostile_messages_parse_without_exceptions(raw):
    parsed = parse_message(raw)
    assert parsed.bodystructure["end"] == len(raw)


def test_deep_nesting_is_cut_at_the_limit():
    raw = b"Content-Type: multipart/mixed; boundary=a\r\n\r\n" + b"--a\r\nContent-Type: message/rfc822\r\n\r\n" * 300
    depth, part = 0, parse_message(raw).bodystructure
    while "parts" in part or "message" in part:
        part = part["parts"][0] if "parts" in part else part["message"]["body"]
        depth += 1
    assert depth <= 50


def test_envelope_addresses_and_groups():
    raw = (
        b"From: \"Alice A.\" <alice@example.test>\r\nTo: friends: bob@example.test, carol@example.test;, dave@x.test\r\n"
        b"Subject: =?utf-8?q?caf=C3=A9?=\r\nMessage-ID: <id1@example.test>\r\n\r\nbody"
    )
    parsed = parse_message(raw)
    assert parsed.envelope["from"] == [["Alice A.", None, "alice", "example.test"]]
    assert parsed.envelope["to"] == [
        [None, None, "friends", None],
        [None, None, "bob", "example.test"],
        [None, None, "carol", "example.test"],
        [None, None, None, None],
        [None, None, "dave", "x.test"],
    ]
    assert parsed.envelope["sender"] == parsed.envelope["from"]
    assert parsed.subject == "café"
    assert parsed.message_id == "<id1@example.test>"


# The fast forms of to_crlf and snippet against their definitions -----------------------------


@given(st.binary(max_size=300) | st.lists(st.sampled_from([b"a", b"\r", b"\n", b"\r\n", b"."]), max_size=60).map(b"".join))
def test_to_crlf_turns_each_lf_and_its_cr_into_crlf_and_keeps_lone_crs(raw):
    assert to_crlf(raw) == re.sub(rb"\r?\n", b"\r\n", raw)


_LINES = st.lists(st.sampled_from(["", " ", "> quoted text", "  >x", "word", "two  words", "\t tab", "é ü",
                                   "x" * 150, "a\u2028b", "c\x0cd", "line\r"]), max_size=40)


@given(_LINES.map("\n".join), st.integers(min_value=1, max_value=300))
def test_snippet_reads_a_window_but_gives_what_the_whole_text_gives(text, length):
    lines = [line for line in text.splitlines() if not line.lstrip().startswith(">")]
    assert snippet(text, length) == re.sub(r"\s+", " ", " ".join(lines)).strip()[:length]


ADDRESS_FIELDS = ("from", "sender", "reply-to", "to", "cc", "bcc")
ADDRESS_SAMPLES = [
    "alice@example.test", "Alice <alice@example.test>", '"Smith, Alice" <alice@example.test>',
    "a@b.test, Bob Two <bob@b.test>,c@c.test", 'Alice<a@b.test>', ' "" <a@b.test> ', "a.b+c@d-e.test",
    "J. Smith <j@b.test>", "a@b.test (comment)", "team: a@b.test, c@d.test;", "=?utf-8?q?Al=C3=AFce?= <a@b.test>",
    '"quoted local"@b.test', "a@b.test,", ",a@b.test", "a@@b.test", "<a@b.test>", "Ünïcode <a@b.test>",
    '"a\\"b" <a@b.test>', "a@[127.0.0.1]", "Two  Spaces <a@b.test>", "tab\tname <a@b.test>", "a..b@c.test",
    '"Ünï" <a@b.test>', "a@b.test  ,  c@d.test", "Name <a@b.test> trailing", "@b.test", "a@", "",
]


def _full_parser_groups(value):
    from email.policy import default as policy

    header = policy.header_factory("to", value)
    return [(g.display_name, [(a.display_name or "", a.username or "", a.domain or "") for a in g.addresses])
            for g in header.groups]


def _corpus_address_values():
    from mailcore.mime.headers import parse_fields, split_header

    for path in corpus_files():
        raw = to_crlf(path.read_bytes())
        end, _ = split_header(raw)
        for name, value in parse_fields(raw[:end]):
            if name in ADDRESS_FIELDS:
                yield value


@pytest.mark.parametrize("value", ADDRESS_SAMPLES)
def test_address_fast_path_agrees_with_the_full_parser(value):
    from mailcore.mime.headers import _simple_address_list, address_groups

    if _simple_address_list(value) is not None:
        assert address_groups(value) == _full_parser_groups(value)


def test_address_fast_path_agrees_over_the_corpus_and_takes_the_common_shapes():
    from mailcore.mime.headers import _simple_address_list, address_groups

    values = list(_corpus_address_values())
    fast = [v for v in values if _simple_address_list(v) is not None]
    assert len(fast) > len(values) // 2  # the fast path serves most real headers
    for value in fast:
        assert address_groups(value) == _full_parser_groups(value), value
    # and these shapes are read by the fast path
    for value in ("alice@example.test", "Alice <alice@example.test>", '"Smith, Alice" <a@b.test>, c@d.test'):
        assert _simple_address_list(value) is not None


@given(st.text(alphabet='ab .,<>@"\\()=?:;\t', max_size=30))
def test_address_fast_path_agrees_on_any_text(value):
    from mailcore.mime.headers import _simple_address_list, address_groups

    if _simple_address_list(value) is not None:
        assert address_groups(value) == _full_parser_groups(value)


@pytest.mark.parametrize(("value", "unreadable"), [
    ("Alice <alice@example.test>", False),
    ('"Smith, Alice" <a@b.test>, c@d.test', False),
    ("alice@example.test (Alice (not bob@example.test))", False),  # nested comment
    ('"bob@example.test" <alice@example.test>', False),  # quoted display name
    ('"a\\"@b" <alice@example.test>', False),  # escaped quote inside the quoted string
    ("Friends: a@x.test, b@y.test;", False),  # a group
    ("Alice <alice@example.test>,", False),  # an empty element (RFC 5322 §4.4)
    ("Alice <alice@example.test> <bob@example.test>", True),
    ("alice@example.test bob@example.test", True),
    ("=?utf-8?q?bob@example.test?= <alice@example.test>", True),
    ("<@route.test:alice@example.test>", True),  # obsolete source route: two "@", one address
])
def test_an_address_list_is_unreadable_when_an_at_sign_belongs_to_no_address_read(value, unreadable):
    from mailcore.mime.headers import unreadable_address_list

    assert unreadable_address_list(value) is unreadable


def test_every_corpus_from_field_is_readable_but_the_one_with_two_bare_addresses():
    from mailcore.mime.headers import parse_fields, split_header, unreadable_address_list

    unreadable = []
    for path in corpus_files():
        raw = to_crlf(path.read_bytes())
        end, _ = split_header(raw)
        unreadable += [value for name, value in parse_fields(raw[:end]) if name == "from" and unreadable_address_list(value)]
    assert unreadable == ["tim@powerupdev.com concierge@powerupdev.com"]


# Large and many-part messages: the fast forms against their definitions ---------------------


def boundary_spans_by_lines(raw, start, end, boundary):
    """RFC 2046 §5.1.1 read line by line: the definition `_boundary_spans` finds with bytes.find."""
    delimiter = b"--" + boundary.encode()
    spans, part_start, position = [], None, start
    while position <= end:
        line_end = raw.find(b"\r\n", position, end)
        line_end = end if line_end < 0 else line_end
        line = raw[position:line_end].rstrip(b" \t")
        if line.startswith(delimiter) and line[len(delimiter):] in (b"", b"--"):
            if part_start is not None:
                spans.append((part_start, max(part_start, position - 2)))
            if line.endswith(b"--") and line != delimiter:
                return spans
            part_start = min(line_end + 2, end)
        position = line_end + 2
    if part_start is not None:
        spans.append((part_start, end))
    return spans


_BODY_PIECES = st.lists(st.sampled_from([b"--b", b"--b--", b"--bx", b"--b  ", b"-", b"b", b"\r\n", b"\r", b"\n",
                                         b" ", b"x", b"--", b"\r\n--b\r\n", b"\r\n--b--"]), max_size=40)


@given(_BODY_PIECES.map(b"".join), st.integers(min_value=0, max_value=3), st.integers(min_value=0, max_value=3))
def test_boundary_search_finds_what_reading_every_line_finds(body, cut_start, cut_end):
    raw = b"xx\r\n" + body + b"\r\nyy"
    start, end = min(cut_start, len(raw)), max(min(cut_start, len(raw)), len(raw) - cut_end)
    assert parse_module._boundary_spans(raw, start, end, "b") == boundary_spans_by_lines(raw, start, end, "b")


def test_split_header_reads_an_entity_between_start_and_end_in_place():
    """split_header searches entity[start:end] in place; the offsets are the slice's, moved by start."""
    first, second, third = b"A: 1\r\n\r\nfirst", b"B: 2\r\n\r\nsecond", b"C: 3 no blank line"
    raw = first + second + third
    start, end = len(first), len(first) + len(second)
    assert parse_module.split_header(raw, start, end) == (start + 6, start + 8)
    assert parse_module.split_header(raw, end) == (len(raw), len(raw))  # no blank line: all header
    assert parse_module.split_header(raw, 0, len(first)) == (6, 8)
    assert parse_module.split_header(raw, start, start + 5) == (start + 5, start + 5)  # its blank line is beyond


def test_text_already_crlf_is_not_copied():
    raw = b"Subject: x\r\n\r\nline\r\n" * 3
    assert to_crlf(raw) is raw


def many_text_parts(texts, encoding="8bit", charset="utf-8", subtype="plain"):
    def encode(text):
        data = text.encode(charset)
        if encoding == "base64":
            import base64
            data = base64.encodebytes(data)
        elif encoding == "quoted-printable":
            import quopri
            data = quopri.encodestring(data)
        return to_crlf(data)
    parts = [b"--b\r\nContent-Type: text/%s; charset=%s\r\nContent-Transfer-Encoding: %s\r\n\r\n%s\r\n"
             % (subtype.encode(), charset.encode(), encoding.encode(), encode(text)) for text in texts]
    return b"Content-Type: multipart/mixed; boundary=b\r\n\r\n" + b"".join(parts) + b"--b--\r\n"


def extract_text_by_definition(raw, structure, limit):
    """Every display part decoded whole, then cut: what extract_text gives while reading only what it needs."""
    html, texts = text_module.display_parts(structure)
    parts = dict(leaves(structure))
    chunks = [part_text(raw, parts[path]) for path in texts]
    if not chunks and html:
        chunks.append(html_to_text(part_text(raw, parts[html])))
    return "\n".join(chunks)[:limit]


_TEXT = st.text(st.sampled_from("ab é€😀\n=."), max_size=300)


@given(st.lists(_TEXT, min_size=1, max_size=6), st.sampled_from(["8bit", "base64", "quoted-printable"]),
       st.sampled_from(["utf-8", "utf-16", "iso-8859-15"]), st.sampled_from(["plain", "html"]),
       st.integers(min_value=1, max_value=400))
def test_extract_text_reads_only_what_its_limit_needs_and_gives_what_decoding_everything_gives(
        texts, encoding, charset, subtype, limit):
    if charset == "iso-8859-15":
        texts = [t.replace("😀", "") for t in texts]
    raw = many_text_parts(texts, encoding, charset, subtype)
    structure = parse_message(raw).bodystructure
    assert extract_text(raw, structure, limit) == extract_text_by_definition(raw, structure, limit)


@given(st.lists(st.sampled_from(["<p>", "</p>", "word ", "<b>x</b>", "&amp;", "&eacute;", "<script>no</script>",
                                 "<br>", "<!-- c -->", "<a href='x'>link</a>", "\n"]), max_size=80).map("".join),
       st.integers(min_value=1, max_value=200))
def test_html_to_text_fed_in_pieces_up_to_a_limit_gives_the_whole_documents_text(html, limit):
    original, text_module.HTML_FEED_CHARS = text_module.HTML_FEED_CHARS, 7  # many piece boundaries
    try:
        assert html_to_text(html, limit)[:limit] == html_to_text(html)[:limit]
    finally:
        text_module.HTML_FEED_CHARS = original


def test_the_text_of_a_message_of_ten_thousand_parts_is_its_parts_text():
    raw = many_text_parts([f"part{n}" for n in range(10_000)])
    text = extract_text(raw, parse_message(raw).bodystructure)
    assert text.split("\n") == [f"part{n}" for n in range(10_000)]


def test_only_the_beginning_of_a_large_html_body_is_read_for_its_text():
    html = "<p>" + "word " * 300_000 + "</p>"  # 1.5 million characters
    assert html_to_text(html, limit=10).split()[:2] == ["word", "word"]
    assert len(html_to_text(html, limit=10)) < len(html_to_text(html)) / 10


# Well-formed elements of an address list, with what makes cutting it at commas hard: commas in quoted
# display names, comments, encoded words, domain literals, source routes and groups.
_ADDRESS_ELEMENTS = st.sampled_from([
    "b@c.test", "<e@f.test>", '"x, y" <e@f.test>', "Name (c, d) <a@b.test>", "a@b.test (comment, with (nested, one))",
    "=?utf-8?q?J=C3=B6rg=2C_x?= <j@x.test>", "=?utf-8?b?SsO2cmcsIHk=?= <j@x.test>", "x@[1.2.3.4]", '"a\\"b, c" <q@r.test>',
    "g: h@i.test, j@k.test;", "empty group:;", "<@r.test,@s.test:l@m.test>", '"quoted, local"@d.test', "é <u@v.test>",
    "Who =?utf-8?q?=E2=82=AC,?= <w@x.test>",
])


@given(st.lists(_ADDRESS_ELEMENTS, min_size=1, max_size=12), st.integers(min_value=1, max_value=3))
def test_an_address_list_read_in_batches_of_elements_reads_as_the_whole(elements, batch):
    """A long list is given to the stdlib parser some elements at a time (it copies the rest of the header for
    each token it reads); cut at the commas between elements, a list of well-formed elements reads the same."""
    from mailcore.mime import headers

    value = ", ".join(elements)
    assert headers._top_level_elements(value) == [elements[0], *(" " + e for e in elements[1:])]
    try:
        _full_parser_groups(value)
    except Exception:  # noqa: BLE001 - the stdlib gives up on some lists ("g:; , a@b"): the batches read more
        return
    original = headers.ADDRESS_BATCH, headers.BATCHED_FROM
    headers.ADDRESS_BATCH, headers.BATCHED_FROM = batch, 0
    try:
        assert headers.address_groups(value) == headers._parsed_address_list(value)  # the whole list at once
    finally:
        headers.ADDRESS_BATCH, headers.BATCHED_FROM = original


@given(st.text(alphabet='ab .,<>@"\\()=?:;[]\t', max_size=60))
def test_a_long_address_list_of_any_text_reads_in_batches_without_an_exception(value):
    from mailcore.mime import headers

    original = headers.ADDRESS_BATCH, headers.BATCHED_FROM
    headers.ADDRESS_BATCH, headers.BATCHED_FROM = 2, 0
    try:
        assert isinstance(headers.address_groups(value), list)
    finally:
        headers.ADDRESS_BATCH, headers.BATCHED_FROM = original


def test_the_address_lists_of_the_corpus_read_in_batches_as_the_whole():
    from mailcore.mime import headers

    original = headers.ADDRESS_BATCH, headers.BATCHED_FROM
    headers.ADDRESS_BATCH, headers.BATCHED_FROM = 1, 0
    try:
        for value in _corpus_address_values():
            assert headers.address_groups(value) == headers._parsed_address_list(value), value
    finally:
        headers.ADDRESS_BATCH, headers.BATCHED_FROM = original


def test_only_the_first_64_kib_of_a_header_value_is_decoded_for_display():
    from mailcore.mime.headers import MAX_DECODED_CHARS, decode_words

    value = " ".join(f"=?utf-8?q?w=C3=B6rd{n}?=" for n in range(40_000))  # about 1 MB
    decoded = decode_words(value)
    assert decoded.startswith("wörd0wörd1wörd2")  # RFC 2047 §6.2: space between encoded words is dropped
    assert decoded == decode_words(value[:MAX_DECODED_CHARS])
