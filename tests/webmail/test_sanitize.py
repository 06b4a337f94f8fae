"""The HTML sanitiser against hostile markup; its output is stable (sanitising twice changes nothing)."""
from __future__ import annotations

import pytest

from webmail.sanitize import sanitize

HOSTILE = {
    "script": "<script>alert(1)</script>ok",
    "event handler": '<img src="cid:a" onerror="alert(1)"><div onmouseover="x()">ok</div>',
    "javascript url": '<a href="javascript:alert(1)">ok</a><a href="JaVaScRiPt&#58;alert(1)">ok</a>',
    "data url": '<a href="data:text/html,<script>alert(1)</script>">ok</a><img src="data:image/png;base64,AAAA">',
    "svg animate": '<svg><a xlink:href="#"><animate attributeName="href" to="javascript:alert(1)"/>'
                   '<set attributeName="href" to="javascript:alert(1)"/><text>ok</text></a></svg>',
    "style element": "<style>body{background:url(https://t.test/x)}</style>ok",
    "style expression": '<div style="width:expression(alert(1));color:red">ok</div>',
    "style url": '<div style="background-image:url(https://t.test/x);background:url(https://t.test/y)">ok</div>',
    "fixed overlay": '<div style="position:fixed;top:0;left:0;z-index:9999">ok</div>',
    "base": '<base href="https://evil.test/">ok',
    "meta refresh": '<meta http-equiv="refresh" content="0;url=https://evil.test">ok',
    "form": '<form action="https://evil.test"><input name="password"><button>go</button></form>ok',
    "nested iframe": '<iframe src="https://evil.test"></iframe><object data="x"></object><embed src="y">ok',
    "unclosed": '<div><p><b>ok<a href="https://x.test/"',
    "mutation": "<noscript><p title=\"</noscript><img src=x onerror=alert(1)>\">ok",
    "mxss math": "<math><mtext><table><mglyph><style><img src=x onerror=alert(1)>ok",
    "comment trick": "<!--><img src=x onerror=alert(1)>-->ok",
}
FORBIDDEN = ("<script", "onerror", "onmouseover", "javascript:", "data:", "<style", "expression", "url(",
             "position", "z-index", "<base", "<meta", "<form", "<input", "<iframe", "<object", "<embed",
             "<svg", "animate", "<set", "evil.test", "t.test")


def _no_inline(_cid: str) -> str | None:
    return None


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_html_loses_everything_dangerous(name):
    output = sanitize(HOSTILE[name], allow_remote=False, inline_url=_no_inline).html
    lowered = output.lower()
    for bad in FORBIDDEN:
        assert bad not in lowered, (name, bad, output)


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_sanitising_twice_gives_the_same_output(name):
    once = sanitize(HOSTILE[name], allow_remote=True, inline_url=_no_inline).html
    assert sanitize(once, allow_remote=True, inline_url=_no_inline).html == once


def test_remote_images_are_removed_and_reported_until_allowed():
    html = '<img src="https://t.test/a.png" alt="a"><img src="//t.test/b.png">'
    blocked = sanitize(html, allow_remote=False, inline_url=_no_inline)
    assert blocked.remote_blocked and "t.test" not in blocked.html
    allowed = sanitize(html, allow_remote=True, inline_url=_no_inline)
    assert not allowed.remote_blocked and 'src="https://t.test/a.png"' in allowed.html


def test_cid_images_point_at_the_inline_part_url():
    output = sanitize('<img src="cid:logo@x">', False, {"logo@x": "/mail/1/2/inline/2/"}.get).html
    assert output == '<img src="/mail/1/2/inline/2/">'


def test_links_open_in_a_new_tab_without_opener_or_referrer():
    output = sanitize('<a href="https://example.org/" target="_self">x</a>', False, _no_inline).html
    assert output == '<a href="https://example.org/" target="_blank" rel="noopener noreferrer">x</a>'


def test_harmless_styles_and_formatting_stay():
    output = sanitize('<p style="color:red;font-weight:bold">Hi <i>you</i></p>', False, _no_inline).html
    assert output == '<p style="color:red;font-weight:bold">Hi <i>you</i></p>'
