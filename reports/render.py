"""One table model, three writers: Markdown for reading in the repository, LaTeX (booktabs) for a
paper, HTML for the index page. Building a table once and formatting it three times keeps the
numbers in all three identical by construction.
"""
from __future__ import annotations

import html
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Cell:
    text: str
    bold: bool = False


@dataclass
class Table:
    stem: str
    title: str
    caption: str
    header: list[str]
    rows: list[list[Cell]]
    label_columns: int = 1
    notes: list[str] = field(default_factory=list)
    empty_text: str = "No rows."
    # LaTeX column spec when the default (labels left, numbers right) would run off the page
    latex_columns: str | None = None


def to_markdown(table: Table) -> str:
    lines = [f"**{_md(table.title)}.** {_md(table.caption)}", ""]
    if table.rows:
        lines.append(_md_row(table.header))
        lines.append("|" + "|".join(":---" if i < table.label_columns else "---:"
                                    for i in range(len(table.header))) + "|")
        lines += [_md_row([f"**{_md(c.text)}**" if c.bold else _md(c.text) for c in row], escape=False)
                  for row in table.rows]
    else:
        lines.append(_md(table.empty_text))
    for note in table.notes:
        lines += ["", _md(note)]
    return "\n".join(lines) + "\n"


def to_latex(table: Table) -> str:
    spec = table.latex_columns or "l" * table.label_columns + "r" * (len(table.header) - table.label_columns)
    lines = ["\\begin{table}[t]", "\\centering",
             f"\\caption{{{_tex(table.title)}. {_tex(table.caption)}}}", f"\\label{{tab:{table.stem}}}"]
    if table.rows:
        lines += [f"\\begin{{tabular}}{{{spec}}}", "\\toprule",
                  " & ".join(_tex(h) for h in table.header) + " \\\\", "\\midrule"]
        lines += [" & ".join(f"\\textbf{{{_tex(c.text)}}}" if c.bold else _tex(c.text) for c in row) + " \\\\"
                  for row in table.rows]
        lines += ["\\bottomrule", "\\end{tabular}"]
    else:
        lines.append(_tex(table.empty_text))
    lines += [f"\\par\\smallskip{{\\footnotesize {_tex(note)}}}" for note in table.notes]
    lines.append("\\end{table}")
    return "\n".join(lines) + "\n"


def to_html(table: Table) -> str:
    esc = html.escape
    heading = f"<strong>{esc(table.title)}.</strong> {esc(table.caption)}"
    notes = [f'<p class="note">{esc(note)}</p>' for note in table.notes]
    if not table.rows:
        return "\n".join([f'<p id="{esc(table.stem)}">{heading}</p>',
                          f'<p class="note">{esc(table.empty_text)}</p>', *notes]) + "\n"
    lines = [f'<table id="{esc(table.stem)}">', f"<caption>{heading}</caption>",
             "<thead><tr>" + "".join(f"<th>{esc(h)}</th>" for h in table.header) + "</tr></thead>", "<tbody>"]
    for row in table.rows:
        cells = [f'<td class="{"label" if i < table.label_columns else "num"}">'
                 + (f"<strong>{esc(cell.text)}</strong>" if cell.bold else esc(cell.text)) + "</td>"
                 for i, cell in enumerate(row)]
        lines.append("<tr>" + "".join(cells) + "</tr>")
    lines += ["</tbody>", "</table>", *notes]
    return "\n".join(lines) + "\n"


def _md(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("*", "\\*")


def _md_row(cells: list[str], escape: bool = True) -> str:
    return "| " + " | ".join(_md(c) if escape else c for c in cells) + " |"


_TEX_CHARS = {
    "\\": "\\textbackslash{}", "&": "\\&", "%": "\\%", "$": "\\$", "#": "\\#", "_": "\\_", "{": "\\{",
    "}": "\\}", "~": "\\textasciitilde{}", "^": "\\textasciicircum{}", "±": "$\\pm$", "α": "$\\alpha$",
    "Δ": "$\\Delta$", "†": "$^\\dagger$", "‡": "$^\\ddagger$", "–": "--", "−": "$-$",
}


def _tex(text: str) -> str:
    return "".join(_TEX_CHARS.get(ch, ch) for ch in text)
