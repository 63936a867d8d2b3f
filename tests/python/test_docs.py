"""Facts written down once: the README's example is the example file."""

import os
import re

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def _read(*path):
    with open(os.path.join(ROOT, *path), encoding="utf-8") as f:
        return f.read()


def test_the_readme_shows_the_example_file():
    readme = _read("README.md")
    block = re.search(r"## Example\n\n```r\n(.*?)```", readme, re.S).group(1)
    code = [line for line in block.splitlines() if not line.startswith("#>")]
    assert code == _read("inst", "examples", "backup_and_restore.R").splitlines()


def test_the_readme_shows_what_the_example_prints():
    readme = _read("README.md")
    block = re.search(r"## Example\n\n```r\n(.*?)```", readme, re.S).group(1)
    printed = [line[3:] for line in block.splitlines() if line.startswith("#> ")]
    assert printed == ["Interrupted!", "[1] 0 1 2", "[1] 10"]


def test_the_example_is_written_once():
    # The help page takes it from the file (@example); the vignette reads it.
    roxygen = _read("R", "callback-backup-and-restore.R")
    assert "@example inst/examples/backup_and_restore.R" in roxygen
    assert "stop('Interrupting!')" not in roxygen
    vignette = _read("vignettes", "fault-tolerant-training.Rmd")
    assert 'file = system.file("examples", "backup_and_restore.R"' in vignette
    assert "stop('Interrupting!')" not in vignette
