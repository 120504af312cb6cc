"""Install the reference MCP server the tests run, into ``.mcp-servers/`` of this checkout.

``@modelcontextprotocol/server-everything`` comes from npm at a pinned version (Node.js 20 or
newer and npm are needed). The tests find it at
``.mcp-servers/node_modules/@modelcontextprotocol/server-everything``; they skip without it,
and fail when ``CI`` or ``TRIO_AGENTS_REQUIRE_MCP`` is set (then a missing npm fails this
script too). Already installed, it does nothing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

PACKAGE = "@modelcontextprotocol/server-everything"
VERSION = "2026.8.31"
ROOT = Path(__file__).resolve().parent.parent
PREFIX = ROOT / ".mcp-servers"


def main() -> int:
    installed = PREFIX / "node_modules" / PACKAGE / "package.json"
    if installed.exists() and f'"version": "{VERSION}"' in installed.read_text(encoding="utf-8"):
        print(f"{PACKAGE}@{VERSION} is already installed in {PREFIX}")
        return 0
    npm = shutil.which("npm")
    if npm is None:
        print("npm is not on PATH: install Node.js 20 or newer", file=sys.stderr)
        # Locally the tests that need the server then skip; under CI they must run.
        required = os.environ.get("CI") or os.environ.get("TRIO_AGENTS_REQUIRE_MCP")
        return 1 if required else 0
    command = [npm, "install", "--no-audit", "--no-fund", "--prefix", str(PREFIX)]
    return subprocess.run([*command, f"{PACKAGE}@{VERSION}"], check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
