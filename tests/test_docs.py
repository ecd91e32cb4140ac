"""The documentation: README is a front page whose links resolve, the docs site builds with
every link and anchor resolved, and every measured note says when and on what it was measured."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from conftest import PROJECT_ROOT, documentation

NOTES = sorted(p for p in (PROJECT_ROOT / "benchmarks" / "results").glob("*.md")
               if p.name != "README.md")
LINK = re.compile(r"\]\(([^)\s]+)\)")


def relative_links(text: str) -> list[str]:
    """Markdown link targets that are paths in the repository (no URL, no in-page anchor)."""
    return [target.split("#")[0] for target in LINK.findall(text)
            if not re.match(r"[a-z]+:", target) and not target.startswith("#")]


def test_readme_is_a_front_page_of_at_most_200_lines():
    assert len(documentation("README.md").splitlines()) <= 200


def test_every_relative_link_in_readme_resolves_to_a_file():
    links = relative_links(documentation("README.md"))
    assert len(links) >= 10  # the docs pages, the notes' index, the picture
    missing = [link for link in links if not (PROJECT_ROOT / link).is_file()]
    assert not missing, f"README links to files that do not exist: {missing}"


def test_the_picture_on_the_front_page_is_small():
    (picture,) = [link for link in relative_links(documentation("README.md"))
                  if link.endswith(".png")]
    assert (PROJECT_ROOT / picture).stat().st_size <= 150_000


def test_the_docs_site_builds_strictly(tmp_path):
    """`mkdocs build --strict`: a broken link, anchor or nav entry fails the build."""
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict",
                           "--config-file", str(PROJECT_ROOT / "mkdocs.yml"),
                           "--site-dir", str(tmp_path / "site")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "site" / "training" / "index.html").is_file()
    assert (tmp_path / "site" / "benchmarks" / NOTES[0].stem / "index.html").is_file()


def test_a_broken_link_fails_the_build(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "index.md").write_text("# x\n\n[gone](nowhere.md)\n")
    (tmp_path / "mkdocs.yml").write_text("site_name: x\n")
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict",
                           "--config-file", str(tmp_path / "mkdocs.yml"),
                           "--site-dir", str(tmp_path / "site")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode != 0 and "nowhere.md" in done.stdout + done.stderr


def test_every_file_the_pages_name_exists():
    """Paths such as `tests/pipelines/train_gan/test_signals.py` or `src/srgan_pipeline/...`:
    a moved file is renamed in the pages too."""
    pages = ["README.md", *(p.name for p in (PROJECT_ROOT / "docs").glob("*.md"))]
    named = {(page, path) for page in pages for path in re.findall(
        r"`((?:src|tests|benchmarks|conf|notebooks)/[\w./-]+\.(?:py|yml|ipynb|md))`",
        documentation(page))}
    assert len(named) >= 10
    missing = [n for n in named if not (PROJECT_ROOT / n[1]).is_file()
               and not n[1].startswith("conf/local/")]  # the user's own, git-ignored
    assert sorted(missing) == []


@pytest.mark.parametrize("note", NOTES, ids=[n.stem for n in NOTES])
def test_every_measured_note_names_its_date_machine_and_what(note):
    text = note.read_text()
    measured = re.search(r"^- \*\*Measured\*\*: (.*)$", text, re.MULTILINE)
    dates = re.findall(r"\d{4}-\d{2}-\d{2}", measured.group(1) if measured else "")
    assert dates, f"{note.name}: no '- **Measured**: YYYY-MM-DD' line"
    assert note.name[:10] == max(dates), f"{note.name}: the name starts with its latest date"
    assert re.search(r"^- \*\*Machine\*\*: \S", text, re.MULTILINE), f"{note.name}: no machine"
    assert re.search(r"^- \*\*What\*\*: \S", text, re.MULTILINE), f"{note.name}: no what"
    assert "`" in text, f"{note.name}: no command"


def test_every_note_is_listed_in_the_index():
    index = (PROJECT_ROOT / "benchmarks" / "results" / "README.md").read_text()
    assert [n for n in NOTES if f"({n.name})" not in index] == []
