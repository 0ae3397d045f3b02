"""The README's benchmark section: the latest table and burst plot, with their date and machine,
between two markers (replaced whole on each update)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks import report

README = Path(__file__).resolve().parents[1] / "README.md"
BEGIN = "<!-- benchmarks: begin (written by python -m benchmarks --update-readme) -->"
END = "<!-- benchmarks: end -->"


def section(doc: dict[str, Any], plots: list[Path], results: str = "") -> str:
    m = doc["machine"]
    results = results or f"{doc['date']}.json"
    lines = [BEGIN, "",
             f"Latest `make bench` ({doc['settings'].get('preset')} sizes), {doc['date']}, commit {doc['commit']}: "
             f"{m['cores']} cores ({m['cpu']}), {m['memory_gib']} GiB, load average "
             f"{doc['load_average_before']} before and {doc['load_average_after']} after; the official agent "
             f"is wandb {doc['official_wandb']}. Medians (min-max) over the repetitions; lower is better everywhere; "
             "ratios are ours/official and ours/floor. The JSON with every run and the request breakdowns: "
             f"[benchmarks/results/{results}](benchmarks/results/{results}).", "",
             report.table(doc), ""]
    notes = report.notes(doc)
    if notes:
        lines += [notes, ""]
    for p in plots:
        if p.name.endswith("-burst.png"):
            lines += [f"![burst: enqueue -> created per run](benchmarks/results/{p.name})", ""]
    lines.append(END)
    return "\n".join(lines)


def update(doc: dict[str, Any], plots: list[Path], path: Path = README, results: str = "") -> None:
    """`results`: the JSON's file name under benchmarks/results/."""
    text = path.read_text()
    block = section(doc, plots, results)
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        text = head + block + rest.split(END, 1)[1]
    else:
        text = text.rstrip() + "\n\n## Benchmarks\n\n" + block + "\n"
    path.write_text(text)
