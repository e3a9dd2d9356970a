"""Hardened XML parsing for provider answers (issue 6: XXE and entity expansion).

A provider's answer is untrusted input. ``parse_xml`` refuses, before and after
lxml sees it, anything a plain answer never needs: a DOCTYPE or entity
declaration (billion laughs, external entities such as ``file:///etc/passwd``),
an oversized body, or a tree deeper than libxml2's default limit (huge_tree off).
No entity is resolved, no DTD is loaded and nothing is fetched from the network.

Lookups go by local name at any depth because some answers (Ogangi) document
their element names but not their root or nesting.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from typing import Any

from lxml import etree

MAX_BYTES = 4 * 1024 * 1024  # far above any answer we read (a page of 1000 MOs)

# Declarations are refused outright: no legitimate answer carries a DTD.
_DECLARATION = re.compile(rb"<!\s*(?:DOCTYPE|ENTITY|ELEMENT|ATTLIST)", re.IGNORECASE)
_WIDE_BOMS = (b"\xff\xfe", b"\xfe\xff", b"\x00\x00\xfe\xff", b"\xff\xfe\x00\x00")


class XMLError(ValueError):
    """The body is not a safe, well-formed XML document."""


class _RefuseAll(etree.Resolver):
    """Never load anything an entity or DTD points at (belt and braces)."""

    def resolve(  # type: ignore[override]  # lxml passes a context; stubs lag
        self, url: str | None, pubid: str | None, context: Any
    ) -> Any:
        raise XMLError("external resource refused")


_local = threading.local()


def _parser() -> etree.XMLParser:
    """This thread's parser: building one costs more than a small answer's parse,
    and an lxml parser must not be used by two threads at once."""
    parser: etree.XMLParser | None = getattr(_local, "parser", None)
    if parser is None:
        parser = _local.parser = _new_parser()
    return parser


def _new_parser() -> etree.XMLParser:
    parser = etree.XMLParser(
        resolve_entities=False,
        load_dtd=False,
        dtd_validation=False,
        no_network=True,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
        recover=False,
    )
    parser.resolvers.add(_RefuseAll())
    return parser


def parse_xml(body: bytes, *, max_bytes: int = MAX_BYTES) -> etree._Element:
    """The root element of ``body``; raises XMLError for anything unsafe or broken.

    The messages never quote the body (the caller decides what excerpt is safe).
    """
    if not isinstance(body, bytes | bytearray):
        raise XMLError("XML body must be bytes")
    if len(body) > max_bytes:
        raise XMLError(f"XML answer too large ({len(body)} bytes > {max_bytes})")
    if not body.strip():
        raise XMLError("empty answer")
    _refuse_declarations(bytes(body))
    try:
        root = etree.fromstring(bytes(body), _parser())
    except XMLError:
        raise
    except etree.XMLSyntaxError as e:
        raise XMLError(f"not well-formed XML ({_reason(e)})") from None
    except (etree.LxmlError, ValueError) as e:
        raise XMLError(f"unreadable XML ({type(e).__name__})") from None
    if root is None:
        raise XMLError("no root element")
    docinfo = root.getroottree().docinfo
    if getattr(docinfo, "doctype", "") or docinfo.internalDTD is not None:
        raise XMLError("DOCTYPE declarations are refused")
    for _ in root.iter(etree.Entity):
        raise XMLError("entity references are refused")
    return root


def _refuse_declarations(body: bytes) -> None:
    head = body.lstrip(b"\xef\xbb\xbf")
    if head.startswith(_WIDE_BOMS) or b"\x00" in head[:4]:
        # UTF-16/32 would hide a declaration from the byte scan: answers are UTF-8
        raise XMLError("only UTF-8 (or ASCII-compatible) XML is accepted")
    if _DECLARATION.search(body):
        raise XMLError("DOCTYPE and ENTITY declarations are refused")


def _reason(e: etree.XMLSyntaxError) -> str:
    msg = str(e.msg or "syntax error").splitlines()[0]
    return msg[:80]


# -- lookups by local name ------------------------------------------------------------


def local(el: etree._Element) -> str:
    """The element's name without a namespace."""
    tag = el.tag
    return tag.rpartition("}")[2] if isinstance(tag, str) else ""


def find_all(root: etree._Element, name: str) -> Iterator[etree._Element]:
    """Every element named ``name`` (any namespace) at any depth, in document order."""
    return root.iter("{*}" + name)


def find_top(root: etree._Element, name: str) -> etree._Element | None:
    """The element named ``name`` closest to the root (the first at that depth).

    Distinguishes an answer's own ``<status>`` from a nested ``<message><status>``.
    """
    best: etree._Element | None = None
    best_depth = -1
    for el in find_all(root, name):
        depth = sum(1 for _ in el.iterancestors())
        if best is None or depth < best_depth:
            best, best_depth = el, depth
    return best


def child_text(el: etree._Element, name: str) -> str | None:
    """Stripped text of the first direct child named ``name``, else of the first
    descendant; None when there is none."""
    for child in el:
        if local(child) == name:
            return (child.text or "").strip()
    for found in find_all(el, name):
        if found is not el:
            return (found.text or "").strip()
    return None
