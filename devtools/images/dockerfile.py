"""Read the final stage of a Dockerfile into an image config: the local builds take USER, ENV,
ENTRYPOINT, CMD, EXPOSE and WORKDIR from the Dockerfile itself, so the two cannot drift apart.

Only what the project's Dockerfiles use is understood: line continuations, comments, ``FROM``
stages, ``ENV k=v ...``, exec-form (JSON) ``ENTRYPOINT``/``CMD``, ``COPY`` and ``RUN`` (recorded,
not run). Anything else raises ValueError naming the line, so a new instruction cannot be
silently ignored.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field
from pathlib import Path

KNOWN = {"FROM", "ARG", "ENV", "USER", "EXPOSE", "ENTRYPOINT", "CMD", "WORKDIR", "COPY", "RUN"}


@dataclass
class Stage:
    """The final stage of a Dockerfile, as the image config and the build steps it gives."""

    base: str = ""
    env: dict[str, str] = field(default_factory=dict)
    user: str | None = None
    entrypoint: list[str] | None = None
    cmd: list[str] | None = None
    workdir: str | None = None
    exposed: list[str] = field(default_factory=list)
    copies: list[tuple[list[str], str]] = field(default_factory=list)  # (sources, destination)
    runs: list[str] = field(default_factory=list)

    def config(self, base_env: dict[str, str] | None = None) -> dict:
        """The OCI image config this stage describes, on top of a base image's env (PATH first)."""
        env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", **(base_env or {}), **self.env}
        out: dict = {"Env": [f"{k}={v}" for k, v in env.items()]}
        if self.user:
            out["User"] = self.user
        if self.entrypoint is not None:
            out["Entrypoint"] = self.entrypoint
        if self.cmd is not None:
            out["Cmd"] = self.cmd
        if self.workdir:
            out["WorkingDir"] = self.workdir
        if self.exposed:
            out["ExposedPorts"] = {(p if "/" in p else f"{p}/tcp"): {} for p in self.exposed}
        return out


def _logical_lines(text: str) -> list[str]:
    lines, current = [], ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):  # a comment inside a continued instruction
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        lines.append(current + stripped)
        current = ""
    if current:
        lines.append(current)
    return lines


def parse(path: Path) -> Stage:
    """The final stage of the Dockerfile at ``path``; ValueError on an instruction not understood."""
    args: dict[str, str] = {}
    stage = Stage()
    for line in _logical_lines(path.read_text()):
        word, _, rest = line.partition(" ")
        word, rest = word.upper(), rest.strip()
        if word not in KNOWN:
            raise ValueError(f"{path}: instruction {word} is not understood by the local image build: {line}")
        if word == "ARG":
            name, _, default = rest.partition("=")
            args[name] = default
        elif word == "FROM":
            image = rest.split()[0]
            for name, value in args.items():
                image = image.replace(f"${{{name}}}", value).replace(f"${name}", value)
            stage = Stage(base=image)
        elif word == "ENV":
            for item in shlex.split(rest):
                key, sep, value = item.partition("=")
                if not sep:
                    raise ValueError(f"{path}: only ENV KEY=VALUE is understood: {line}")
                stage.env[key] = value
        elif word == "USER":
            stage.user = rest
        elif word == "WORKDIR":
            stage.workdir = rest
        elif word == "EXPOSE":
            stage.exposed += rest.split()
        elif word in ("ENTRYPOINT", "CMD"):
            try:
                value = json.loads(rest)
            except ValueError:
                raise ValueError(f"{path}: only the exec (JSON) form is understood: {line}") from None
            setattr(stage, word.lower(), value)
        elif word == "COPY":
            parts = [p for p in shlex.split(rest) if not p.startswith("--")]
            stage.copies.append((parts[:-1], parts[-1]))
        elif word == "RUN":
            stage.runs.append(rest)
    return stage
