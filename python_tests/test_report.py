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
#: The columns of results.csv written by dalcore before the settings columns (older runs).
OLD_COLUMNS = ("dataset", "method", "pretrain", "semi", "repeat", "cycle", "labels", "accuracy",
               "seconds")


def _write_run(folder: Path, rng: np.random.Generator, methods, repeats: int, cycles: int,
               budget: int, pretrain: int = 0, semi: int = 0, torn: bool = False) -> dict:
    """A synthetic results.csv of an older run; returns {(method, labels): [accuracies]}."""
    folder.mkdir(parents=True)
    acc: dict = {}
    with open(folder / "results.csv", "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(OLD_COLUMNS)
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


#: The columns of a current results.csv (settings and the repetition's own seed).
NEW_COLUMNS = COLUMNS


def _write_new_run(folder: Path, rng: np.random.Generator, method: str, seeds: list[int],
                   width: str = "0.25", cycles: int = 3, budget: int = 10) -> dict:
    """A results.csv in the current format; returns {labels: {seed: accuracy}}."""
    folder.mkdir(parents=True)
    acc: dict = {}
    with open(folder / "results.csv", "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(NEW_COLUMNS)
        for r, seed in enumerate(seeds):
            for c in range(cycles):
                a = round(float(rng.uniform(0.3, 1.0)), 6)
                labels = budget * (c + 1)
                acc.setdefault(labels, {})[seed] = a
                w.writerow(["digits", method, 0, 0, "cpu", width, 16, 200, "", budget,
                            "reciprocal", 0, "balanced", "0.1.0", r, seed, c, labels,
                            f"{a:.6f}", "1.0"])
    return acc


def test_runs_differing_only_in_width_are_never_averaged(tmp_path: Path, rng, capsys) -> None:
    a = _write_new_run(tmp_path / "w25", rng, "random", [11, 12, 13], width="0.25")
    b = _write_new_run(tmp_path / "w50", rng, "random", [21, 22], width="0.5")
    assert main(["report", str(tmp_path / "w25"), str(tmp_path / "w50"),
                 "--out", str(tmp_path / "m")]) == 0
    table = _parse_table((tmp_path / "m" / "summary.md").read_text())
    assert len(table) == 2 * 3
    for width, acc in (("0.25", a), ("0.5", b)):
        for labels, by_seed in acc.items():
            vals = np.array(list(by_seed.values()), dtype=np.float64)
            mean, std = table[(f"random (width={width})", labels)]
            assert mean == pytest.approx(100 * vals.mean(), abs=0.0051)
            assert std == pytest.approx(100 * vals.std(), abs=0.0051)
    curves = summarize(load_results([tmp_path / "w25", tmp_path / "w50"]))
    assert [c.legend for c in curves] == ["random (width=0.25)", "random (width=0.5)"]
    assert "preset=cpu" in summary_markdown(curves)  # the shared settings are stated once


def test_same_repetition_counts_once(tmp_path: Path, rng) -> None:
    a = _write_new_run(tmp_path / "a", rng, "ceal", [5, 6])
    b = _write_new_run(tmp_path / "b", rng, "ceal", [6, 7])  # seed 6 again: the same repetition
    # one folder given twice (also through another spelling of its path) counts once
    twice = summarize(load_results([tmp_path / "a", tmp_path / "a" / "results.csv",
                                    tmp_path / "b" / ".." / "a"]))
    assert len(twice) == 1
    for labels, acc in zip(twice[0].labels, twice[0].accuracies):
        np.testing.assert_allclose(np.sort(acc), np.sort(list(a[labels].values())))
    merged = summarize(load_results([tmp_path / "a", tmp_path / "b"]))
    assert len(merged) == 1 and len(merged[0].labels) == 3
    for labels, acc in zip(merged[0].labels, merged[0].accuracies):
        expect = {**b[labels], **a[labels]}  # seed 6 read first from a
        assert acc.size == 3
        np.testing.assert_allclose(np.sort(acc), np.sort(list(expect.values())))


def test_old_rows_load_beside_new_ones(tmp_path: Path, rng) -> None:
    old = _write_run(tmp_path / "old", rng, ["random"], repeats=2, cycles=3, budget=10)
    new = _write_new_run(tmp_path / "new", rng, "random", [1, 2, 3])
    curves = summarize(load_results([tmp_path / "old", tmp_path / "new"]))
    assert len(curves) == 2  # unknown settings are not assumed equal to the new run's
    assert curves[0].variant == "settings unknown (older run)" and curves[1].variant == ""
    _write_new_run(tmp_path / "new2", rng, "random", [9], width="0.5")
    three = summarize(load_results([tmp_path / "old", tmp_path / "new", tmp_path / "new2"]))
    assert [c.variant for c in three] == ["settings unknown (older run)", "width=0.25",
                                          "width=0.5"]
    for labels, acc in zip(curves[0].labels, curves[0].accuracies):
        np.testing.assert_allclose(acc, old[("random", labels)])
    assert [a.size for a in curves[1].accuracies] == [3, 3, 3]
    assert sorted(new) == curves[1].labels


GARBAGE = {
    "binary": b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe",
    "header": b"a,b,c\n1,2,3\n",
    "empty": b"",
    "accuracy": (",".join(OLD_COLUMNS) + "\ndigits,random,0,0,0,0,10,high,1.0\n").encode(),
    "range": (",".join(OLD_COLUMNS) + "\ndigits,random,0,0,0,0,10,1.7,1.0\n").encode(),
    "short": (",".join(OLD_COLUMNS) + "\ndigits,random,0,0\n").encode(),
    "long": (",".join(OLD_COLUMNS) + "\ndigits,random,0,0,0,0,10,0.5,1.0,9,9\n").encode(),
    "nul": (",".join(OLD_COLUMNS) + "\ndigits,ran\x00dom,0,0,0,0,10,0.5,1.0\n").encode(),
}


@pytest.mark.parametrize("kind", sorted(GARBAGE))
def test_garbage_results_one_line_naming_the_file(kind: str, tmp_path: Path, rng,
                                                  capsys) -> None:
    _write_run(tmp_path / "good", rng, ["random"], repeats=1, cycles=2, budget=10)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "results.csv").write_bytes(GARBAGE[kind])
    assert main(["report", str(tmp_path / "good"), str(bad), "--out", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(bad / "results.csv") in err[0], err
    assert "Traceback" not in err[0]
    with pytest.raises(ValueError, match="results.csv"):
        load_results([bad])


def test_report_without_matplotlib_one_line(tmp_path: Path, rng, monkeypatch, capsys) -> None:
    import importlib.util

    _write_run(tmp_path / "a", rng, ["random"], repeats=1, cycles=2, budget=10)
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "matplotlib" else real(name, *a))
    assert main(["report", str(tmp_path / "a"), "--out", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip install matplotlib" in err[0]
    assert not (tmp_path / "m").exists()  # checked before anything is written


def test_report_into_a_file_one_line(tmp_path: Path, rng, capsys) -> None:
    _write_run(tmp_path / "a", rng, ["random"], repeats=1, cycles=2, budget=10)
    (tmp_path / "file").write_text("x")
    assert main(["report", str(tmp_path / "a"), "--out", str(tmp_path / "file")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(tmp_path / "file") in err[0]
