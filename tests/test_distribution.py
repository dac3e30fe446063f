"""What a user installs: the wheel's metadata and files, and a version that agrees with the changelog.

The distribution tests need tactical installed from its wheel, as ``nox -s tests`` does; run from
a checkout (``PYTHONPATH=src``) they skip, and under ``CI=true`` they fail instead.
"""

from __future__ import annotations

import importlib.metadata
import re
import tomllib
from pathlib import Path

import pytest
from tests.conftest import IN_CI

import tactical

ROOT = Path(__file__).resolve().parents[1]
PROJECT_URLS = {"Homepage", "Documentation", "Repository", "Changelog", "Issues"}


@pytest.fixture(scope="module")
def distribution() -> importlib.metadata.Distribution:
    """The installed distribution that the tests' ``import tactical`` comes from."""
    imported = Path(tactical.__file__).resolve()
    try:
        found = importlib.metadata.distribution("tactical")
    except importlib.metadata.PackageNotFoundError:
        found = None
    if found is None or Path(str(found.locate_file("tactical/__init__.py"))).resolve() != imported:
        reason = f"tactical is imported from {imported.parent}, not from an installed wheel"
        if IN_CI:
            pytest.fail(f"{reason}; CI=true requires the wheel (run nox)", pytrace=False)
        pytest.skip(reason)
    return found


def project_urls(distribution: importlib.metadata.Distribution) -> dict[str, str]:
    """The metadata's ``Project-URL`` entries by label."""
    entries = distribution.metadata.get_all("Project-URL") or []
    return dict(entry.split(", ", 1) for entry in entries)


class TestInstalledDistribution:
    def test_the_metadata_links_to_docs_repository_changelog_and_issues(
        self, distribution: importlib.metadata.Distribution
    ) -> None:
        """Each Project-URL label is present once, with an https address."""
        urls = project_urls(distribution)
        assert set(urls) == PROJECT_URLS
        assert all(url.startswith("https://") for url in urls.values()), urls

    def test_the_readme_links_to_the_same_docs_and_repository(
        self, distribution: importlib.metadata.Distribution
    ) -> None:
        """README.md, the PyPI page, gives the documentation and repository of the metadata."""
        urls = project_urls(distribution)
        readme = (ROOT / "README.md").read_text(encoding="utf-8")
        assert urls["Documentation"] in readme
        assert urls["Repository"] in readme

    def test_the_licence_is_declared_and_installed(
        self, distribution: importlib.metadata.Distribution
    ) -> None:
        """License-Expression is MIT and the LICENSE file ships in the metadata folder."""
        assert distribution.metadata["License-Expression"] == "MIT"
        assert distribution.metadata.get_all("License-File") == ["LICENSE"]
        files = distribution.files or []
        (licence,) = [file for file in files if file.parts[-2:] == ("licenses", "LICENSE")]
        installed = licence.read_text(encoding="utf-8")
        assert installed.startswith("MIT License\n")
        assert installed == (ROOT / "LICENSE").read_text(encoding="utf-8")

    def test_the_wheel_installs_only_the_tactical_package_and_its_metadata(
        self, distribution: importlib.metadata.Distribution
    ) -> None:
        """Every installed file is under tactical/ or the dist-info folder; py.typed is there."""
        files = distribution.files or []
        tops = {file.parts[0] for file in files}
        assert tops == {"tactical", f"tactical-{distribution.version}.dist-info"}
        assert "tactical/py.typed" in {file.as_posix() for file in files}


def release(version: str) -> tuple[int, int, int]:
    """The X.Y.Z of a version such as ``0.2.0`` or ``0.2.0.dev0``."""
    match = re.fullmatch(r"(\d+)\.(\d+)\.(\d+)(\.dev\d+)?", version)
    assert match, f"version {version!r} is not X.Y.Z or X.Y.Z.devN"
    return int(match[1]), int(match[2]), int(match[3])


class TestChangelog:
    def setup_method(self) -> None:
        self.version = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))[
            "project"
        ]["version"]
        self.changelog = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
        self.headings = re.findall(r"^## \[([^\]]+)\]", self.changelog, re.MULTILINE)

    def test_the_version_agrees_with_the_changelog(self) -> None:
        """A .dev version sits under "Unreleased", after the latest release; a release is on top."""
        if ".dev" in self.version:
            assert self.headings[0] == "Unreleased"
            assert len(self.headings) > 1, "no release below Unreleased to compare with"
            assert release(self.version) > release(self.headings[1])
        else:
            assert self.headings[0] == self.version

    def test_every_release_is_dated_and_linked(self) -> None:
        """Each release heading has an ISO date, and each heading a link at the bottom."""
        for heading in self.headings[1:]:
            assert re.search(
                rf"^## \[{re.escape(heading)}\] - \d{{4}}-\d{{2}}-\d{{2}}$",
                self.changelog,
                re.MULTILINE,
            ), heading
        for heading in self.headings:
            link = rf"^\[{re.escape(heading)}\]: https://github\.com/tactical-ddd/tactical/\S+$"
            assert re.search(link, self.changelog, re.MULTILINE), heading
