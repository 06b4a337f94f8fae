"""HTML mail made safe to show: nh3 (ammonia) with an allow-list, remote content blocked on request.

The output is what nh3 serialises; nothing patches it with string operations
afterwards. It is shown in a sandboxed iframe under its own CSP (see
views/message.py), so even a sanitiser bug cannot run script or reach the app.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import nh3

ALLOWED_TAGS = {
    "a", "abbr", "address", "b", "bdi", "bdo", "blockquote", "br", "caption", "center", "cite", "code",
    "col", "colgroup", "dd", "del", "dfn", "div", "dl", "dt", "em", "font", "h1", "h2", "h3", "h4", "h5",
    "h6", "hr", "i", "img", "ins", "kbd", "li", "mark", "ol", "p", "pre", "q", "s", "samp", "small",
    "span", "strike", "strong", "sub", "sup", "table", "tbody", "td", "tfoot", "th", "thead", "tr", "tt",
    "u", "ul", "var",
}
# Tags dropped with everything inside them (their text is not mail content).
DROPPED_WITH_CONTENT = {"script", "style", "title", "head", "template", "noscript", "iframe", "object",
                        "embed", "svg", "math", "form", "textarea", "select", "button"}
COMMON_ATTRIBUTES = {"align", "valign", "dir", "lang", "title", "width", "height", "style", "bgcolor",
                     "border", "cellpadding", "cellspacing", "colspan", "rowspan", "nowrap"}
TAG_ATTRIBUTES = {"a": {"href"}, "img": {"src", "alt"}, "font": {"color", "face", "size"},
                  "ol": {"start", "type"}, "td": {"abbr"}, "th": {"abbr", "scope"}}
# style="..." keeps only these properties: none can position, overlay or load anything
# (no position, z-index, background-image, content, behavior, expression, url()).
STYLE_PROPERTIES = {
    "color", "background-color", "font", "font-family", "font-size", "font-style", "font-weight",
    "font-variant", "text-align", "text-decoration", "text-indent", "text-transform", "line-height",
    "letter-spacing", "word-spacing", "white-space", "vertical-align", "direction", "width", "max-width",
    "min-width", "height", "max-height", "min-height", "margin", "margin-top", "margin-right",
    "margin-bottom", "margin-left", "padding", "padding-top", "padding-right", "padding-bottom",
    "padding-left", "border", "border-top", "border-right", "border-bottom", "border-left",
    "border-color", "border-style", "border-width", "border-collapse", "border-spacing", "border-radius",
    "list-style-type", "table-layout", "display",
}
# A style attribute containing any of these is dropped whole (old IE expressions, escapes, loads).
SUSPICIOUS_STYLE = ("expression", "url(", "\\", "@import", "javascript", "behavior", "-moz-binding")
URL_SCHEMES = {"http", "https", "mailto", "cid"}
REMOTE_PREFIXES = ("http://", "https://", "//")


@dataclass(frozen=True)
class SanitizedHtml:
    html: str
    remote_blocked: bool  # some remote content was removed; the user may choose to load it


def sanitize(html: str, allow_remote: bool, inline_url: Callable[[str], str | None]) -> SanitizedHtml:
    """Sanitise `html`; `inline_url(content_id)` gives the URL of an inline part, or None.

    Remote images are dropped unless `allow_remote`; `cid:` images are pointed at
    the message's own inline parts; links open in a new tab without opener or referrer.
    """
    blocked = False

    def filter_attribute(tag: str, name: str, value: str) -> str | None:
        nonlocal blocked
        if tag == "img" and name == "src":
            lowered = value.strip().lower()
            if lowered.startswith("cid:"):
                return inline_url(value.strip()[4:].strip("<>"))
            if lowered.startswith(REMOTE_PREFIXES):
                if allow_remote:
                    return value
                blocked = True
                return None
            return None  # data:, relative and unknown sources
        if name == "style" and any(word in value.lower() for word in SUSPICIOUS_STYLE):
            return None
        return value

    cleaned = nh3.clean(
        html,
        tags=ALLOWED_TAGS,
        clean_content_tags=DROPPED_WITH_CONTENT,
        attributes={"*": COMMON_ATTRIBUTES, **TAG_ATTRIBUTES},
        attribute_filter=filter_attribute,
        url_schemes=URL_SCHEMES,
        link_rel="noopener noreferrer",
        set_tag_attribute_values={"a": {"target": "_blank"}},
        filter_style_properties=STYLE_PROPERTIES,
        strip_comments=True,
    )
    return SanitizedHtml(cleaned, blocked)


# What the rich-text editor may send: formatting only (no images, styles or forms), links to the web or mail.
OUTGOING_TAGS = {"a", "b", "blockquote", "br", "code", "div", "em", "h1", "h2", "h3", "i", "li", "ol", "p", "pre",
                 "s", "span", "strike", "strong", "sub", "sup", "u", "ul"}
OUTGOING_URL_SCHEMES = {"http", "https", "mailto"}


def sanitize_outgoing(html: str) -> str:
    """The HTML body of a message the user writes in the editor, as nh3 serialises it (sanitising it again
    gives the same output)."""
    return nh3.clean(
        html,
        tags=OUTGOING_TAGS,
        clean_content_tags=DROPPED_WITH_CONTENT,
        attributes={"a": {"href"}, "*": {"dir"}},
        url_schemes=OUTGOING_URL_SCHEMES,
        link_rel="noopener noreferrer",
        strip_comments=True,
    )
