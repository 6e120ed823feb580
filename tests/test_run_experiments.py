"""scripts/run_experiments.py: a grid runs once, finished runs are skipped, seeds are aggregated."""
import json
import os
import statistics

import yaml
from conftest import tiny_config_dict

from scripts import run_experiments


def test_grid_runs_skips_finished_runs_and_writes_results(tmp_path, tiny_files, capsys):
    data_root = os.path.dirname(tiny_files["train"])
    base = tiny_config_dict({k: "{data_root}/" + os.path.basename(v) for k, v in tiny_files.items()}, "none",
                            eval={"attacks": ["fgm"], "epsilons": [0.0, 1.0], "robustness_examples": 8})
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump({"experiments": [{
        "name": "tiny", "title": "Tiny", "base": base, "seeds": [1, 2],
        "variants": {"fgm": {"regularizer": {"name": "fgm"}}},
        "attack": {"name": "fgm", "epsilon": 1.0}}]}))
    args = [str(spec), "--data-root", data_root, "--runs-dir", str(tmp_path / "runs"),
            "--results", str(tmp_path / "docs" / "RESULTS.md")]
    assert run_experiments.main(args) == 0
    printed = capsys.readouterr().out
    assert printed.count(" s\n") == 2 and "skipped" not in printed  # both seeds ran
    assert run_experiments.main(args) == 0
    assert capsys.readouterr().out.count("skipped (finished)") == 2
    results = (tmp_path / "docs" / "RESULTS.md").read_text()
    rows = [line for line in results.splitlines() if line.startswith("| fgm |")]
    assert len(rows) == 1 and rows[0].count(" ± ") >= 7 and "| 2 |" in rows[0]
    metrics = [json.loads((tmp_path / "runs" / "tiny" / f"fgm-seed{k}" / "metrics.json").read_text()) for k in (1, 2)]
    cells = [c.strip() for c in rows[0].strip("|").split("|")]
    for cell, values in ((cells[2], [m["dev"]["accuracy"] for m in metrics]),
                         (cells[3], [m["test"]["accuracy"] for m in metrics]),
                         (cells[4], [1 - m["test"]["accuracy"] for m in metrics])):
        assert cell == f"{100 * statistics.mean(values):.2f} ± {100 * statistics.stdev(values):.2f}"
    assert (tmp_path / "docs" / "results_tiny.png").exists()
    assert "python train.py --config" in results and "--data-root" in results
    saved = yaml.safe_load((tmp_path / "runs" / "tiny" / "fgm-seed2.yaml").read_text())
    assert saved["train"]["seed"] == 2 and saved["data"]["train"] == tiny_files["train"]
    # A report is never rewritten from fewer runs than it was made from, unless asked.
    before = results
    other = args[:args.index("--runs-dir") + 1] + [str(tmp_path / "elsewhere")] + args[args.index("--runs-dir") + 2:]
    assert run_experiments.main(other + ["--report-only"]) == 2
    assert "made from 2 finished runs, but only 0" in capsys.readouterr().err
    assert (tmp_path / "docs" / "RESULTS.md").read_text() == before
    # An unknown experiment name is an error, before anything runs.
    assert run_experiments.main(args + ["--only", "typo"]) == 2
    assert "--only typo: no such experiment" in capsys.readouterr().err
    assert (tmp_path / "docs" / "RESULTS.md").read_text() == before


def test_a_bad_spec_is_one_line(tmp_path, capsys):
    spec = tmp_path / "spec.yaml"
    spec.write_text("experiments: [{name: x}]\n")
    assert run_experiments.main([str(spec)]) == 2
    assert "experiments[0]: missing base, variants, seeds" in capsys.readouterr().err


def test_variants_given_as_a_list_are_one_line(tmp_path, capsys):
    spec = tmp_path / "spec.yaml"
    spec.write_text("experiments: [{name: x, base: {}, variants: [none, fgm], seeds: [1]}]\n")
    assert run_experiments.main([str(spec)]) == 2
    assert "experiments[0].variants: expected a mapping" in capsys.readouterr().err
