"""Great Expectations Data Docs: where a validation's site goes, and one self-contained page of it.

A validation builds its Data Docs site (``index.html``, one page per split's validation result and
per suite, the static files its pages use) in a staging folder beside the destination and moves it
into place when it is complete (:func:`publish`), so a destination never holds half a site. A folder is only
replaced when it is empty or a site debiaskd wrote (it holds :data:`MARKER`).

The site's pages load Bootstrap, jQuery and icons from CDNs, and the index fills its tables with
JavaScript; the Kubeflow UI shows one HTML file and loads nothing else. :func:`single_page` makes
that file: a summary of the validation (every split, every broken rule, the cross-split checks
included), then the content of each split's GX validation page, with scripts, navigation, remote
images and links to other pages of the site left out and a small inline style sheet in place of the
CDN's (status icons as characters).
"""

from __future__ import annotations

import contextlib
import html
import json
import os
import shutil
import uuid
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from debiaskd.core.errors import DebiaskdError, cut
from debiaskd.core.paths import check_output_dir

#: the file that marks a folder as a Data Docs site debiaskd wrote (so a later validation may replace it)
MARKER = ".debiaskd-data-docs"

STYLE = """body{font-family:system-ui,sans-serif;max-width:80rem;margin:2rem auto;padding:0 1rem;line-height:1.4}
table{border-collapse:collapse;margin:.5rem 0}th,td{border:1px solid #ccc;padding:.2rem .45rem;vertical-align:top;
text-align:left}h1{font-size:1.6rem}h2{font-size:1.3rem;border-top:2px solid #444;padding-top:1rem;margin-top:2.5rem}
.alert{background:#eef0f3;padding:.4rem .6rem;margin:.6rem 0}.alert h5{margin:0;font-size:1.05rem}
.text-success,.ok{color:#1a7f37}.text-danger,.failed{color:#c62828}.fas::before{font-style:normal}
.fa-check-circle::before{content:"\\2714"}.fa-times::before,.fa-times-circle::before{content:"\\2718"}
.fa-exclamation-triangle::before{content:"\\26A0"}.hidden,[hidden]{display:none}
code,pre{background:#f6f8fa}pre{padding:.5rem;overflow:auto}.show-scrollbars{max-height:24rem;overflow:auto}"""

#: elements left out of a page with everything inside them
_DROP = {"script", "noscript", "style", "head", "nav", "footer", "button", "form", "iframe", "object", "svg",
         "template"}
#: elements left out (they have no content)
_VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param", "source", "track", "wbr"}
_DROP_VOID = {"base", "embed", "input", "link", "meta", "param", "source", "track"}
#: the wrapper elements whose content is kept without them
_UNWRAP = {"html", "body"}


def check_docs_dir(path: str | Path, option: str = "--docs") -> Path:
    """Check, writing nothing, that ``path`` can receive a Data Docs site: absent, empty, or a site an
    earlier validation wrote there (which it replaces)."""
    p = Path(path)
    check_output_dir(p, option)
    if p.is_dir() and any(p.iterdir()) and not (p / MARKER).is_file():
        raise DebiaskdError(f"{option}: this folder is not empty and is not a Data Docs site debiaskd wrote; "
                            "refusing to replace it: give a new or empty folder", file=str(p), rule="output not owned")
    return p


def staging_dir(target: str | Path) -> Path:
    """A new folder beside ``target`` where a site is built before :func:`publish` moves it there."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    return target.parent / f".{target.name}.building-{uuid.uuid4().hex[:8]}"


def prune_static(site: Path) -> None:
    """Remove the static files no page or style sheet of ``site`` refers to: GX copies its whole static
    folder into every site (3.4 MB of tutorial animations, fonts and logos), while its pages use the
    favicon only (their styles are inline, the rest comes from CDNs)."""
    static = site / "static"
    if not static.is_dir():
        return
    text = "".join(p.read_text(encoding="utf-8", errors="replace") for p in site.rglob("*")
                   if p.suffix in (".html", ".css") and p.is_file())
    for path in sorted(static.rglob("*"), reverse=True):  # files before the folders holding them
        if path.is_file() and path.name not in text:
            path.unlink()
        elif path.is_dir() and not any(path.iterdir()):
            path.rmdir()


def publish(staging: Path, target: str | Path) -> Path:
    """Move the site built in ``staging`` to ``target``, replacing an earlier site there."""
    target = Path(target)
    check_docs_dir(target, str(target))
    (staging / MARKER).write_text("a Great Expectations Data Docs site written by debiaskd\n", encoding="utf-8")
    old = None
    if os.path.lexists(target):
        old = target.parent / f".{target.name}.old-{uuid.uuid4().hex[:8]}"
        os.replace(target, old)
    os.replace(staging, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return target


def discard(staging: Path) -> None:
    with contextlib.suppress(OSError):
        shutil.rmtree(staging)


class _Cleaner(HTMLParser):
    """Re-emits a GX page's body without scripts, navigation, forms, remote resources, links to other
    pages or event handlers; element ids (and ``#`` links to them) get ``prefix`` so several pages can
    share one document."""

    def __init__(self, prefix: str) -> None:
        super().__init__(convert_charrefs=True)
        self.prefix = prefix
        self.out: list[str] = []
        self.skip: tuple[str, int] | None = None  # (tag, nesting) while inside a dropped element
        self.open_links = 0
        self.unwrapped_links: list[bool] = []

    def _dropped(self, tag: str, attrs: dict[str, str | None]) -> bool:
        classes = set((attrs.get("class") or "").split())
        return (tag in _DROP or "collapse" in classes or attrs.get("data-toggle") == "collapse"
                or "col-lg-2" in classes)  # GX's sidebar: filter buttons and table of contents

    def handle_starttag(self, tag: str, attr_list: list[tuple[str, str | None]]) -> None:
        attrs = dict(attr_list)
        if self.skip is not None:
            if tag == self.skip[0] and tag not in _VOID:
                self.skip = (tag, self.skip[1] + 1)
            return
        if tag in _UNWRAP or tag in _DROP_VOID:
            return
        if tag not in _VOID and self._dropped(tag, attrs):
            self.skip = (tag, 1)
            return
        if tag == "img" and not str(attrs.get("src") or "").startswith("data:image/"):
            return
        if tag == "a":
            href = str(attrs.get("href") or "")
            keep = href.startswith("#") and len(href) > 1
            self.unwrapped_links.append(not keep)
            if not keep:
                return
        kept = []
        for name, value in attr_list:
            if name.startswith("on") or (name in ("src", "srcset", "action", "formaction") and tag != "img"):
                continue
            if name == "href":
                value = f"#{self.prefix}-{str(value)[1:]}"
            elif name in ("id", "aria-controls", "aria-labelledby") and value:
                value = f"{self.prefix}-{value}"
            kept.append(name if value is None else f'{name}="{html.escape(str(value), quote=True)}"')
        self.out.append(f"<{tag}{''.join(' ' + a for a in kept)}>")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in _VOID:
            self.handle_endtag(tag)

    def handle_endtag(self, tag: str) -> None:
        if self.skip is not None:
            if tag == self.skip[0]:
                self.skip = None if self.skip[1] == 1 else (tag, self.skip[1] - 1)
            return
        if tag in _UNWRAP or tag in _VOID:
            return
        if tag == "a" and self.unwrapped_links and self.unwrapped_links.pop():
            return
        self.out.append(f"</{tag}>")

    def handle_data(self, data: str) -> None:
        if self.skip is None:
            self.out.append(html.escape(data, quote=False))


def page_content(page: str | Path, prefix: str) -> str:
    """The body of one Data Docs page as HTML that loads nothing and links only within itself."""
    cleaner = _Cleaner(prefix)
    cleaner.feed(Path(page).read_text(encoding="utf-8"))
    cleaner.close()
    return "".join(cleaner.out)


def _examples(failure: dict[str, Any]) -> str:
    rows = [json.dumps(e, ensure_ascii=False, default=str, sort_keys=True) for e in failure.get("examples") or []]
    if not rows:
        return ""
    shown = "".join(f"<li><code>{html.escape(cut(r, 300))}</code></li>" for r in rows[:5])
    return f"<ul>{shown}</ul>"


def _summary(report: dict[str, Any], anchors: dict[str, str]) -> str:
    esc = html.escape
    rows = []
    for s in report.get("splits", []):
        name = str(s["split"])
        state = '<span class="ok">passed</span>' if s.get("ok") else '<span class="failed">failed</span>'
        link = f'<a href="#{anchors[name]}">{esc(name)}</a>' if name in anchors else esc(name)
        rows.append(f"<tr><td>{link}</td><td>{esc(str(s.get('file', '')))}</td><td>{s.get('rows', 0)}</td>"
                    f"<td>{s.get('evaluated', 0)}</td><td>{state}</td></tr>")
    failures = [f for s in report.get("splits", []) for f in s.get("failures", [])]
    failures += list(report.get("cross_split", []))
    parts = ["<table><thead><tr><th>split</th><th>file</th><th>rows</th><th>expectations</th><th>result</th></tr>"
             f"</thead><tbody>{''.join(rows)}</tbody></table>"]
    if failures:
        items = "".join(f"<li><b>{esc(str(f.get('rule')))}</b> [{esc(str(f.get('expectation')))}] in "
                        f"<code>{esc(str(f.get('file')))}</code>: {esc(str(f.get('message')))}{_examples(f)}</li>"
                        for f in failures)
        parts.append(f"<h2>Broken rules</h2><ul>{items}</ul>")
    else:
        parts.append("<p>Every split passed every expectation of its suite, and every cross-split check passed.</p>")
    return "".join(parts)


def single_page(site: str | Path, report: dict[str, Any], pages: dict[str, str | Path], title: str) -> str:
    """One self-contained HTML page of a validation: its summary (``report``, the JSON report's dict),
    then each split's validation page of the Data Docs ``site`` (``pages``: split → page file), the
    failed splits first."""
    site = Path(site)
    anchors = {split: f"gx-{i}" for i, split in enumerate(pages)}
    failed = {str(s["split"]) for s in report.get("splits", []) if not s.get("ok")}
    sections = []
    for split, page in sorted(pages.items(), key=lambda item: item[0] not in failed):  # failed splits first
        path = Path(page) if Path(page).is_absolute() else site / page
        if path.is_file():
            sections.append(f'<h2 id="{anchors[split]}">{html.escape(split)}: Great Expectations validation result</h2>'
                            + page_content(path, anchors[split]))
    verdict = "passed" if report.get("ok") else "failed"
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}: {verdict}</h1>"
            f"<p>Source: <code>{html.escape(str(report.get('source', '')))}</code>. The Great Expectations Data Docs "
            "of this validation, one page: the summary, then each split's validation result.</p>"
            f"{_summary(report, anchors)}{''.join(sections)}</body></html>\n")
