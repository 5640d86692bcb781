"""The report's single entry point, ``index.html``: every table inline, every figure inline, and
links to the Markdown, LaTeX, PNG and SVG files beside it. All links are relative, so the folder
can be moved, zipped or served as it is.
"""
from __future__ import annotations

from dataclasses import dataclass
from html import escape

from reports.render import Table, to_html

STYLE = """body { font-family: sans-serif; max-width: 72rem; margin: 2rem auto; padding: 0 1rem; color: #111; }
table { border-collapse: collapse; margin: 1rem 0; font-size: 0.9rem; }
caption { caption-side: top; text-align: left; padding-bottom: 0.4rem; }
th, td { padding: 0.25rem 0.6rem; border-bottom: 1px solid #ccc; }
th { border-bottom: 2px solid #333; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
figure { display: inline-block; margin: 0.5rem 1rem 1rem 0; vertical-align: top; }
figure img { max-width: 100%; }
figcaption, p.note, p.files { font-size: 0.85rem; color: #333; }
pre { background: #f4f4f4; padding: 0.5rem; overflow-x: auto; }"""


@dataclass(frozen=True)
class Image:
    """A figure shown as ``src`` and linked to ``files`` (paths relative to the report folder)."""
    src: str
    files: tuple[str, ...]
    alt: str
    caption: str


@dataclass(frozen=True)
class Section:
    anchor: str
    title: str
    body: str


def table_section(anchor: str, table: Table, files: list[str]) -> Section:
    return Section(anchor, table.title, to_html(table) + _file_links(files))


def figures_section(anchor: str, title: str, intro: str, images: list[Image]) -> Section:
    body = [f"<p>{escape(intro)}</p>"]
    for image in images:
        body += ["<figure>", f'<img src="{escape(image.src)}" alt="{escape(image.alt)}">',
                 f"<figcaption>{escape(image.caption)} {_links(image.files)}</figcaption>", "</figure>"]
    return Section(anchor, title, "\n".join(body) + "\n")


def text_files_section(anchor: str, title: str, intro: str, files: list[tuple[str, str]]) -> Section:
    """Files shown in full (name, then contents), e.g. the tuner's override files."""
    body = [f"<p>{escape(intro)}</p>"]
    for name, text in files:
        body += [f"<h3>{escape(name)}</h3>", f"<pre>{escape(text)}</pre>"]
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
    return " ".join(f'<a href="{escape(f)}">{escape(f.rsplit(".", 1)[-1].upper())}</a>' for f in files)


def _file_links(files: list[str]) -> str:
    return f'<p class="files">Files: {_links(files)}</p>\n' if files else ""
