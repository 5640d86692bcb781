"""The report's single entry point, ``index.html``: every table inline, every figure inline, and
links to the Markdown, LaTeX, CSV, PNG and SVG files beside it. All links are relative, so the folder
can be moved, zipped or served as it is. No script: the page is what a browser shows without one.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from html import escape
from pathlib import Path

from reports.render import Table, to_html

STYLE = """body { font-family: sans-serif; max-width: 80rem; margin: 2rem auto; padding: 0 1rem; color: #111; }
table { border-collapse: collapse; margin: 1rem 0; font-size: 0.9rem; min-width: min(52rem, 100%); }
caption { caption-side: top; text-align: left; padding-bottom: 0.4rem; }
th, td { padding: 0.25rem 0.6rem; border-bottom: 1px solid #ccc; }
th { border-bottom: 2px solid #333; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
figure { display: inline-block; margin: 0.5rem 1rem 1rem 0; vertical-align: top; max-width: 100%; }
figure img { max-width: 100%; height: auto; }
figure.half { max-width: 48%; }
div.strip { max-height: 24rem; overflow-y: auto; border: 1px solid #ccc; }
div.strip img { max-width: none; }
figcaption, p.note, p.files { font-size: 0.85rem; color: #333; }
pre { background: #f4f4f4; padding: 0.5rem; overflow-x: auto; }"""
# A PNG more than this many times taller than wide (CIFAR-100's 100-row synthetic grid) is shown at
# full resolution in a scrolling box instead of filling the page.
STRIP_RATIO = 2.5


@dataclass(frozen=True)
class Image:
    """A figure shown as ``src`` and linked to ``files`` (paths relative to the report folder)."""
    src: str
    files: tuple[str, ...]
    alt: str
    caption: str
    size: tuple[int, int] | None = None  # width, height in pixels of a PNG shown as it is
    half: bool = False  # one of several figures side by side


@dataclass(frozen=True)
class Section:
    anchor: str
    title: str
    body: str


def png_size(path: Path) -> tuple[int, int] | None:
    """Width and height from a PNG's header (IHDR), or None for anything else."""
    with open(path, "rb") as fh:
        head = fh.read(24)
    if len(head) < 24 or head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        return None
    return struct.unpack(">II", head[16:24])


def table_section(anchor: str, table: Table, files: list[str]) -> Section:
    return Section(anchor, table.title, to_html(table) + _file_links(files))


def tables_section(anchor: str, title: str, intro: str, tables: list[tuple[Table, list[str]]]) -> Section:
    body = [f"<p>{escape(intro)}</p>"] + [to_html(t) + _file_links(files) for t, files in tables]
    return Section(anchor, title, "\n".join(body) + "\n")


def figures_section(anchor: str, title: str, intro: str, images: list[Image]) -> Section:
    body = [f"<p>{escape(intro)}</p>"]
    for image in images:
        size = f' width="{image.size[0]}" height="{image.size[1]}"' if image.size else ""
        img = f'<img src="{escape(image.src)}" alt="{escape(image.alt)}"{size}>'
        if image.size and image.size[1] > STRIP_RATIO * image.size[0]:
            img = f'<div class="strip">{img}</div>'
        body += ['<figure class="half">' if image.half else "<figure>", img,
                 f"<figcaption>{escape(image.caption)} {_links(image.files)}</figcaption>", "</figure>"]
    return Section(anchor, title, "\n".join(body) + "\n")


def text_files_section(anchor: str, title: str, intro: str, files: list[tuple[str, str, str]]) -> Section:
    """Files shown in full (name, link, then contents), e.g. the tuner's override files."""
    body = [f"<p>{escape(intro)}</p>"]
    for name, link, text in files:
        body += [f'<h3><a href="{escape(link)}">{escape(name)}</a></h3>', f"<pre>{escape(text)}</pre>"]
    return Section(anchor, title, "\n".join(body) + "\n")


def definition_section(anchor: str, title: str, intro: str, rows: list[tuple[str, str]], files: list[str]) -> Section:
    """A two-column table of facts (provenance), then links."""
    body = [f"<p>{escape(intro)}</p>", '<table id="provenance">', "<tbody>"]
    body += [f'<tr><th scope="row">{escape(k)}</th><td>{escape(v)}</td></tr>' for k, v in rows]
    body += ["</tbody>", "</table>", _file_links(files).rstrip("\n")]
    return Section(anchor, title, "\n".join(body) + "\n")


def page(title: str, intro: str, sections: list[Section]) -> str:
    nav = "".join(f'<li><a href="#{escape(s.anchor)}">{escape(s.title)}</a></li>' for s in sections)
    parts = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
             '<meta name="viewport" content="width=device-width, initial-scale=1">',
             f"<title>{escape(title)}</title>", f"<style>\n{STYLE}\n</style>", "</head>", "<body>",
             f"<h1>{escape(title)}</h1>", f"<p>{escape(intro)}</p>", f"<nav><ul>{nav}</ul></nav>"]
    for s in sections:
        parts += [f'<section id="{escape(s.anchor)}">', f"<h2>{escape(s.title)}</h2>", s.body.rstrip("\n"),
                  "</section>"]
    parts += ["</body>", "</html>"]
    return "\n".join(parts) + "\n"


def _links(files) -> str:
    """Links named by their format (PNG, SVG), or by file name where two share a format (the CSVs)."""
    kinds = [f.rsplit(".", 1)[-1].upper() for f in files]
    return " ".join(f'<a href="{escape(f)}">{escape(kind if kinds.count(kind) == 1 else f.rsplit("/", 1)[-1])}</a>'
                    for f, kind in zip(files, kinds))


def _file_links(files: list[str]) -> str:
    return f'<p class="files">Files: {_links(files)}</p>\n' if files else ""
