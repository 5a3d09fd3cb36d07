"""report: summary.md (mean ± std, merged folders) against numpy, curves.png, `dalcore report`."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from dalcore.cli import main
from dalcore.experiment import COLUMNS
from dalcore.report import load_results, summarize, summary_markdown

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _write_run(folder: Path, rng: np.random.Generator, methods, repeats: int, cycles: int,
               budget: int, pretrain: int = 0, semi: int = 0, torn: bool = False) -> dict:
    """A synthetic results.csv; returns {(method, labels): [accuracies]}."""
    folder.mkdir(parents=True)
    acc: dict = {}
    with open(folder / "results.csv", "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(COLUMNS)
        for m in methods:
            for r in range(repeats):
                for c in range(cycles):
                    a = float(rng.uniform(0.3, 1.0))
                    labels = budget * (c + 1)
                    acc.setdefault((m, labels), []).append(round(a, 6))
                    w.writerow(["digits", m, pretrain, semi, r, c, labels, f"{a:.6f}", "1.0"])
    if torn:
        with open(folder / "results.csv", "a") as f:
            f.write("digits,random,0,0,9,0,")
    return acc


def _parse_table(text: str) -> dict:
    """{(row name, labels): (mean, std)} from summary.md."""
    lines = [ln for ln in text.splitlines() if ln.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    table = {}
    for ln in lines[2:]:
        cells = [c.strip() for c in ln.strip("|").split("|")]
        for lab, cell in zip(header[1:], cells[1:]):
            if cell:
                mean, std = (float(v) for v in cell.split("±"))
                table[(cells[0], int(lab))] = (mean, std)
    return table


def test_report_merges_two_runs_like_numpy(tmp_path: Path, rng, capsys) -> None:
    a = _write_run(tmp_path / "a", rng, ["random", "ceal"], repeats=3, cycles=4, budget=20)
    b = _write_run(tmp_path / "b", rng, ["random", "ceal"], repeats=2, cycles=4, budget=20,
                   torn=True)
    assert main(["report", str(tmp_path / "a"), str(tmp_path / "b"),
                 "--out", str(tmp_path / "merged")]) == 0
    printed = capsys.readouterr().out
    text = (tmp_path / "merged" / "summary.md").read_text()
    assert text.strip() in printed
    table = _parse_table(text)
    assert len(table) == 2 * 4
    for key, vals in a.items():
        merged = np.array(vals + b[key], dtype=np.float64)
        assert merged.size == 5
        mean, std = table[key]
        assert mean == pytest.approx(100 * merged.mean(), abs=0.0051)
        assert std == pytest.approx(100 * np.std(merged), abs=0.0051)
    png = (tmp_path / "merged" / "curves.png").read_bytes()
    assert png[:8] == PNG_MAGIC and len(png) > 5000
    # a single folder is reported into itself
    assert main(["report", str(tmp_path / "a")]) == 0
    single = _parse_table((tmp_path / "a" / "summary.md").read_text())
    for key, vals in a.items():
        assert single[key][0] == pytest.approx(100 * np.mean(vals), abs=0.0051)
    assert (tmp_path / "a" / "curves.png").read_bytes()[:8] == PNG_MAGIC


def test_tags_and_row_names(tmp_path: Path, rng) -> None:
    _write_run(tmp_path / "p", rng, ["random"], 2, 2, 10, pretrain=1, semi=1)
    _write_run(tmp_path / "q", rng, ["random"], 2, 2, 10)
    curves = summarize(load_results([tmp_path / "p", tmp_path / "q"]))
    assert sorted(c.name for c in curves) == ["PRE + SEMI + random", "random"]
    assert "| PRE + SEMI + random |" in summary_markdown(curves)


def test_report_missing_folder_exit_2(tmp_path: Path, capsys) -> None:
    assert main(["report", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "results.csv" in err[0]
