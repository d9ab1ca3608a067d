"""Every LaTeX table evalkit writes compiles with a real engine, using only the packages it declares.

Each table goes into a bare `article` whose preamble loads exactly the packages named in the table's
`% needs \\usepackage{...}` comment; the PDF must have one page showing the table's labels. Skipped where
no pdflatex (Debian: texlive-latex-base, texlive-latex-recommended for booktabs) or poppler-utils is
installed; .ci/run installs them.
"""

from __future__ import annotations

import inspect
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from test_report import _fake_run, _geneval_records

from evalkit.report.tables import build_table, latex_packages, render

ENGINE = shutil.which("pdflatex")
TOOLS = shutil.which("pdfinfo") and shutil.which("pdftotext")
pytestmark = pytest.mark.skipif(
    not (ENGINE and TOOLS),
    reason="no pdflatex/pdfinfo (apt-get install texlive-latex-base texlive-latex-recommended poppler-utils)",
)


def declared_packages(latex: str) -> list[str]:
    """Packages a table asks for in its comments (`% needs \\usepackage{booktabs}`)."""
    names: list[str] = []
    for line in latex.splitlines():
        if line.lstrip().startswith("%"):
            for group in re.findall(r"\\usepackage\{([^}]*)\}", line):
                names += [n.strip() for n in group.split(",") if n.strip()]
    return names


def compile_table(latex: str, folder: Path) -> str:
    """Compile the table alone in an article; returns the PDF's text (fails on any LaTeX error).

    OT1 fonts draw \\_ as a rule, which pdftotext reads as a space: the text has spaces for underscores.
    """
    packages = "".join(f"\\usepackage{{{p}}}\n" for p in declared_packages(latex))
    source = f"\\documentclass{{article}}\n{packages}\\begin{{document}}\n{latex}\\end{{document}}\n"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "table.tex").write_text(source, encoding="utf-8")
    done = subprocess.run(
        [ENGINE, "-interaction=nonstopmode", "-halt-on-error", "-no-shell-escape", "table.tex"],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=120,
    )
    log = (folder / "table.log").read_text(errors="replace") if (folder / "table.log").exists() else ""
    assert done.returncode == 0, f"pdflatex failed:\n{done.stdout[-3000:]}"
    assert "Undefined control sequence" not in log
    overfull = re.findall(r"Overfull \\hbox \(([\d.]+)pt", log)
    assert not [w for w in overfull if float(w) > 1.0], f"wider than the text: {overfull}"
    info = subprocess.run(["pdfinfo", "table.pdf"], cwd=folder, capture_output=True, text=True, check=True)
    assert re.search(r"^Pages:\s+1$", info.stdout, re.M), info.stdout
    text = subprocess.run(
        ["pdftotext", "-layout", "table.pdf", "-"], cwd=folder, capture_output=True, text=True, check=True
    )
    return text.stdout


def _runs(tmp_path: Path) -> list[Path]:
    """Runs whose names, options and notes carry every LaTeX special character."""
    base = _fake_run(
        tmp_path, "base", "geneval", records=_geneval_records(0, 0.4, prompts=24), model="sd35m_base#1"
    )
    tuned = _fake_run(
        tmp_path, "tuned", "geneval", records=_geneval_records(1, 0.7, prompts=24), model="sd35m_grpo&50%"
    )
    judged = _fake_run(
        tmp_path,
        "judged",
        "wise@legacy",
        {"Cultural": 0.5, "Overall": None},
        model="sd35m_grpo&50%",
        judge="gpt-4.1_{x}~^$",
        scored=3,
        planned=4,
        limit=4,
        summary_extra={"n_failed": 1, "n_records": 4, "failure_reasons": {"reply 'yes' > 50% & <bad>": 1}},
        images_per_sample=1,
    )
    return [base, tuned, judged]


@pytest.mark.parametrize("ci", [False, True], ids=["plain", "ci"])
def test_report_tables_compile(tmp_path, ci):
    base, tuned, judged = _runs(tmp_path)
    variants = {
        "one-run": build_table([base]),
        "footnotes": build_table([base, tuned, judged], ci=ci, resamples=50),
        "baseline": build_table([base, tuned], baseline=base, ci=ci, resamples=50),
    }
    for name, table in variants.items():
        latex = render(table, "latex")
        assert declared_packages(latex) == latex_packages(table) and "booktabs" in latex_packages(table)
        text = compile_table(latex, tmp_path / name)
        assert "sd35m base#1" in text, name
        if name != "one-run":
            assert "sd35m grpo&50%" in text
        if name == "baseline":
            assert "(baseline)" in text
        if ci and name != "one-run":
            assert "±" in text and "bootstrap percentile interval" in text
        if name == "footnotes":  # two protocols: a protocol row over its columns; --limit keeps its hyphens
            assert "wise@legacy" in text and "Chemistry" not in text and "--limit 4" in text


def test_ablation_table_compiles(tmp_path):
    from evalkit.grpo.ablation import Column, format_table

    columns = [Column(key="tiif_short", title="TIIF short_%"), Column(key="geneval", title="GenEval #")]
    rows = {"base": {"tiif_short": 0.0, "geneval": 0.5}, "pick_score": {"tiif_short": 0.0, "geneval": 0.6}}
    titles = {"base": "tiny_sd3 (base)", "pick_score": "PickScore & 50%"}
    notes = ["eval --limit 8 prompts: 8 of 553 (1.4%) scored; reward_model #2 & co"]
    if "footnotes" in inspect.signature(format_table).parameters:  # tables with notes must escape them too
        _, latex = format_table(rows, columns, titles, notes)
    else:
        _, latex = format_table(rows, columns, titles)
        notes = []
    text = compile_table(latex, tmp_path / "ablation")
    assert "tiny sd3 (base)" in text and "PickScore & 50%" in text and "TIIF short %" in text
    for note in notes:
        assert "8 of 553 (1.4%) scored; reward model #2 & co" in " ".join(text.split()), note
