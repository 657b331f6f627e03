"""What the package index shows and what a type checker finds: the installed distribution's
metadata, its py.typed marker, and a README whose links work away from this repository."""

import importlib.metadata
import importlib.resources
import pathlib
import re

PACKAGE = pathlib.Path(__file__).resolve().parents[1]
REPO = PACKAGE.parents[1]


def test_the_package_is_typed():
    assert (importlib.resources.files("apisix_identity") / "py.typed").is_file()


def test_metadata_names_license_urls_and_classifiers():
    meta = importlib.metadata.metadata("apisix-identity")
    assert meta["License-Expression"] == "Apache-2.0"
    assert "LICENSE" in (meta.get_all("License-File") or [])
    urls = dict(u.split(", ", 1) for u in meta.get_all("Project-URL") or [])
    assert {"Homepage", "Documentation", "Source", "Issues"} <= set(urls)
    assert all(u.startswith("https://") for u in urls.values())
    classifiers = meta.get_all("Classifier") or []
    assert "Typing :: Typed" in classifiers
    assert {"Framework :: Django :: 4.2", "Framework :: Django :: 5.2"} <= set(classifiers)


def test_the_license_copy_is_the_repositorys():
    assert (PACKAGE / "LICENSE").read_bytes() == (REPO / "LICENSE").read_bytes()


def test_readme_links_are_absolute():
    """The index renders the README alone: a link relative to this repository leads nowhere."""
    readme = (PACKAGE / "README.md").read_text(encoding="utf-8")
    links = re.findall(r"\]\(([^)\s]+)\)", readme) + re.findall(r"^\[[^\]]+\]:\s*(\S+)", readme, re.M)
    assert links, "the README links to the project"
    relative = [u for u in links if not re.match(r"https?://", u) and not u.startswith("#")]
    assert relative == []


def test_the_oldest_django_pin_is_the_stated_minimum():
    pyproject = (PACKAGE / "pyproject.toml").read_text(encoding="utf-8")
    oldest = re.search(r"^Django==(\d+\.\d+)\.", (PACKAGE / "constraints-oldest-django.txt").read_text(), re.M)
    assert f'"Django>={oldest.group(1)}"' in pyproject
