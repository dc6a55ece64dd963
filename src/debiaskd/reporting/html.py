"""Self-contained HTML pages of a report folder, for the Kubeflow UI and for sharing one file.

The Kubeflow UI shows an ``HTML`` artifact by serving the file at the artifact's URI, so a page must
carry everything it shows: the folder's markdown is rendered (raw HTML in it is escaped, never
passed through), each image the markdown references is inlined as a ``data:`` URI, images it does
not reference are appended, and JSON files are shown as (bounded) code blocks.
"""

from __future__ import annotations

import base64
import contextlib
import html
import json
import mimetypes
from pathlib import Path

from markdown_it import MarkdownIt

#: the most characters of one JSON file a page shows
JSON_CHARS = 20_000
STYLE = """body{font-family:system-ui,sans-serif;max-width:72rem;margin:2rem auto;padding:0 1rem;line-height:1.45}
table{border-collapse:collapse;margin:1rem 0}th,td{border:1px solid #ccc;padding:.25rem .5rem;text-align:right}
th:first-child,td:first-child{text-align:left}img{max-width:100%}pre{background:#f6f8fa;padding:.75rem;overflow:auto}
figure{margin:1.5rem 0}figcaption{color:#555}"""


def _data_uri(path: Path) -> str:
    mime = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"


def _inside(folder: Path, name: str) -> Path | None:
    """``folder/name`` when it is a file inside ``folder`` (no absolute paths, no ``..``), else None."""
    if not name or "://" in name or name.startswith(("data:", "/")):
        return None
    path = (folder / name).resolve()
    return path if path.is_file() and folder.resolve() in path.parents else None


def render_markdown(text: str, folder: Path) -> tuple[str, set[str]]:
    """HTML of ``text`` with the images it references from ``folder`` inlined; returns the HTML and
    the names of the inlined files."""
    md = MarkdownIt("commonmark", {"html": False}).enable("table")
    tokens = md.parse(text)
    used: set[str] = set()
    for token in tokens:
        for child in token.children or []:
            if child.type == "image":
                path = _inside(folder, str(child.attrGet("src") or ""))
                if path is not None:
                    used.add(path.name)
                    child.attrSet("src", _data_uri(path))
    return md.renderer.render(tokens, md.options, {}), used


def folder_page(folder: str | Path, title: str, markdown: str | None = None) -> str:
    """One HTML page for ``folder``: ``markdown`` (default: the folder's ``*.md`` files) rendered,
    then the images and JSON files the markdown did not show."""
    folder = Path(folder)
    parts, used = [], set()
    texts = [markdown] if markdown is not None else [p.read_text(encoding="utf-8") for p in sorted(folder.glob("*.md"))]
    for text in texts:
        body, inlined = render_markdown(text, folder)
        parts.append(body)
        used |= inlined
    for image in sorted(p for p in folder.glob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".svg")):
        if image.name not in used:
            parts.append(f'<figure><img src="{_data_uri(image)}" alt="{html.escape(image.stem)}">'
                         f"<figcaption>{html.escape(image.stem)}</figcaption></figure>")
    for data in sorted(folder.glob("*.json")):
        text = data.read_text(encoding="utf-8", errors="replace")
        with contextlib.suppress(ValueError):  # shown as it is when it is not JSON
            text = json.dumps(json.loads(text), indent=2, default=str)
        if len(text) > JSON_CHARS:
            text = text[:JSON_CHARS] + f"\n… ({len(text) - JSON_CHARS} more characters in {data.name})"
        parts.append(f"<details><summary>{html.escape(data.name)}</summary><pre>{html.escape(text)}</pre></details>")
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style></head><body>\n" + "\n".join(parts) + "\n</body></html>\n")


def write_page(folder: str | Path, out_file: str | Path, title: str, markdown: str | None = None) -> Path:
    """Write :func:`folder_page` to ``out_file`` (atomically); returns its path."""
    out = Path(out_file)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(folder_page(folder, title, markdown), encoding="utf-8")
    tmp.replace(out)
    return out
