import os

from helpers import ROOT

from egrsd.testbed import arithmetic


def test_demo_runs_end_to_end_at_small_sizes(tmp_path, capsys, monkeypatch):
    """`make demo`'s path: shipped base -> evaluation -> CL-EGRSD training -> evaluation -> comparison and plot."""
    from egrsd.testbed.demo import main

    monkeypatch.chdir(ROOT)
    main(
        [
            "--recipe", "recipes/tiny/cl_egrsd/config.yaml",
            "--output-dir", str(tmp_path),
            "--max-problems", "4",
            "--max-new-tokens", "48",
            "--",
            "--max_steps", "2",
            "--per_device_train_batch_size", "8",
            "--num_generations", "4",
            "--max_completion_length", "48",
        ]
    )  # fmt: skip
    printed = capsys.readouterr().out
    assert "| step | reward | tokens | teacher H | gate |" in printed
    assert printed.count("\n| 1 |") == 1 and printed.count("\n| 2 |") == 1
    assert "| verbose base |" in printed and "| + cl_egrsd |" in printed
    assert (tmp_path / "frontier" / "frontier.png").exists()
    assert (tmp_path / "eval-cl_egrsd" / "results.json").exists()
    # The training run's credit, saved at each logging step: the page of the last one is printed.
    page = printed.split("credit page of the last step: ")[1].split()[0]
    assert page == str(tmp_path / "cl_egrsd" / "credit" / "step_00002.html") and os.path.getsize(page) > 0
    assert (tmp_path / "cl_egrsd" / "credit" / "step_00001.jsonl").exists()


def test_valid_derivation_needs_every_step_line_in_order():
    problem = arithmetic.parse_problem("Compute 37+48-15.")
    assert arithmetic.has_valid_derivation(problem, "<think>\n37+48=85\n85-15=70\n</think>\n\n\\boxed{70}")
    verbose = "<think>\n37+48=85\nLet me verify: 85-48=37. Correct.\n85-15=70\n</think>\n\n\\boxed{70}"
    assert arithmetic.has_valid_derivation(problem, verbose)
    assert not arithmetic.has_valid_derivation(problem, "<think>\n85-15=70\n37+48=85\n</think>\n\n\\boxed{70}")
    assert not arithmetic.has_valid_derivation(problem, "<think>\n</think>\n\n\\boxed{70}")
    # Lines after the thinking block do not count.
    assert not arithmetic.has_valid_derivation(problem, "<think>\n37+48=85\n</think>\n85-15=70\n\\boxed{70}")
