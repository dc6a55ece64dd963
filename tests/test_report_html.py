"""Self-contained HTML pages (what the Kubeflow UI shows for an HTML artifact)."""

from __future__ import annotations

import base64
import json

from debiaskd.reporting.html import JSON_CHARS, folder_page, write_page

PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGA"
                       "hKmMIQAAAABJRU5ErkJggg==")


def test_markdown_is_rendered_and_its_images_inlined(tmp_path):
    (tmp_path / "plot.png").write_bytes(PNG)
    (tmp_path / "extra.png").write_bytes(PNG)
    (tmp_path / "report.md").write_text("# Study\n\n| variant | acc |\n|---|---|\n| student_kd | 0.5 |\n\n"
                                        "![accuracy](plot.png)\n\n![outside](../secret.png)\n")
    (tmp_path.parent / "secret.png").write_bytes(PNG)
    page = folder_page(tmp_path, "t")
    assert page.startswith("<!DOCTYPE html>") and "<h1>Study</h1>" in page and "<td>student_kd</td>" in page
    assert 'src="plot.png"' not in page and page.count("data:image/png;base64,") == 2  # plot + extra.png appended
    assert 'src="../secret.png"' in page  # a path outside the folder is never read
    assert "<figcaption>extra</figcaption>" in page


def test_raw_html_in_the_markdown_is_escaped(tmp_path):
    (tmp_path / "report.md").write_text("<script>alert(1)</script>\n\nok <b>x</b>\n")
    page = folder_page(tmp_path, "<t>")
    assert "<script>" not in page and "&lt;script&gt;" in page and "<title>&lt;t&gt;</title>" in page


def test_json_files_are_shown_bounded_and_the_write_is_whole(tmp_path):
    (tmp_path / "analysis.json").write_text(json.dumps({"k": "v" * (2 * JSON_CHARS)}))
    (tmp_path / "notes.json").write_text("not json")
    out = write_page(tmp_path, tmp_path / "out" / "page.html", "a")
    page = out.read_text()
    assert "<summary>analysis.json</summary>" in page and "more characters in analysis.json" in page
    assert len(page) < 3 * JSON_CHARS and "not json" in page
    assert [p.name for p in out.parent.iterdir()] == ["page.html"]
