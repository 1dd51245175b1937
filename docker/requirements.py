"""Prints the package's requirements (its dependencies and the given extras) without torch.

The images install these, then the package itself with --no-deps: the API image never gets torch,
and the worker image keeps the CUDA build of torch its base image ships.
Usage: python docker/requirements.py [--with-core] EXTRA... > requirements.txt
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

EXCLUDED = {"torch", "gora-service"}  # gora-service[...]: the test extra names the package itself


def requirements(extras: list[str], with_core: bool) -> list[str]:
    project = tomllib.loads(Path("pyproject.toml").read_text())["project"]
    wanted = list(project["dependencies"]) if with_core else []
    for extra in extras:
        wanted += project["optional-dependencies"][extra]
    name = re.compile(r"^[A-Za-z0-9_.-]+")
    kept: list[str] = []
    for requirement in wanted:
        match = name.match(requirement)
        if match and match.group(0).lower() not in EXCLUDED and requirement not in kept:
            kept.append(requirement)
    return kept


if __name__ == "__main__":
    args = sys.argv[1:]
    core = "--with-core" in args
    print("\n".join(requirements([a for a in args if a != "--with-core"], core)))
