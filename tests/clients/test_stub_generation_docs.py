"""The buf.gen.yaml examples of docs/grpc.md generate what the client packages commit.

The plugins that run on the Buf Schema Registry (Go, Java, Python's
protocolbuffers/grpc) cannot run here, so those entries are dropped; the local
ones, protoc-gen-es and betterproto's protoc-gen-python_betterproto, run with
buf as a reader would run them.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from support.paths import repository
from support.waiting import UNIT

ROOT = repository()
NODE_BIN = ROOT / "clients" / "node" / "node_modules" / ".bin"
YAML = re.compile(r"```yaml\n(.*?)```", re.DOTALL)
# A remote plugin entry: "- remote: ..." and its indented keys.
REMOTE_PLUGIN = re.compile(r"^  - remote: .*\n(?:    .*\n)*", re.MULTILINE)


def template(marker: str) -> str:
    """The docs' buf.gen.yaml that mentions ``marker``, with remote plugins left out."""
    blocks = [textwrap.dedent(b) for b in YAML.findall((ROOT / "docs" / "grpc.md").read_text())]
    [block] = [b for b in blocks if marker in b]
    return REMOTE_PLUGIN.sub("", block)


def generate(tmp_path: Path, marker: str) -> Path:
    if not (NODE_BIN / "buf").exists():
        if shutil.which("npm") is None and os.environ.get("CI") != "true":
            pytest.skip("npm is not installed, so neither is buf (CI requires it)")
        pytest.fail("clients/node has no node_modules: run scripts/dev test (npm ci there)")
    (tmp_path / "buf.gen.yaml").write_text(template(marker))
    environment = dict(os.environ)
    # protoc-gen-es from clients/node, protoc-gen-python_betterproto from the venv.
    environment["PATH"] = f"{NODE_BIN}:{Path(sys.executable).parent}:{environment['PATH']}"
    result = subprocess.run(
        [
            str(NODE_BIN / "buf"),
            "generate",
            "--template",
            str(tmp_path / "buf.gen.yaml"),
            "--output",
            str(tmp_path / "out"),
        ],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120 * UNIT,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return tmp_path / "out"


def test_the_betterproto_example_makes_the_python_clients_module(tmp_path: Path) -> None:
    out = generate(tmp_path, "protoc-gen-python_betterproto")
    made = (out / "gen" / "betterproto" / "roomcast" / "v1" / "__init__.py").read_text()
    committed = ROOT / "clients" / "python" / "src" / "roomcast_client" / "v1" / "__init__.py"
    assert made == committed.read_text()


def test_the_multi_language_example_makes_the_node_clients_stubs(tmp_path: Path) -> None:
    out = generate(tmp_path, "managed:")
    made = sorted((out / "gen" / "es" / "roomcast" / "v1").iterdir())
    assert [p.name for p in made] == ["admin_pb.ts", "event_pb.ts", "realtime_pb.ts"]
    committed = ROOT / "clients" / "node" / "src" / "gen" / "roomcast" / "v1"

    def without_descriptor(path: Path) -> list[str]:
        # Managed mode sets go_package and java_package, which the embedded
        # file descriptor carries; everything else must match.
        return [line for line in path.read_text().splitlines() if "fileDesc(" not in line]

    for path in made:
        assert without_descriptor(path) == without_descriptor(committed / path.name), path.name
