#!/usr/bin/env python3
"""Print the README's table of application profiles from the binary's own list.

  scripts/profiles_table.py [BINARY]        (default: target/release/security-monitor)

Reads `BINARY profiles --json` and prints a Markdown table: application, profile name,
images that choose it, its line shapes, what counts as a failure, its thresholds, and
what it cannot see. The README's table between `<!-- profiles-table -->` markers is this
output; tests/check_cli.rs checks that every profile is in it. Python 3 standard library.
"""

import json
import subprocess
import sys


def cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ").strip() or "–"


def main() -> int:
    binary = sys.argv[1] if len(sys.argv) > 1 else "target/release/security-monitor"
    out = subprocess.run([binary, "profiles", "--json"], capture_output=True, check=True)
    profiles = json.loads(out.stdout)
    print("| application | profile | images | shapes | a failure is | thresholds | not possible |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for p in profiles:
        images = ", ".join(f"`{i}`" for i in p["images"])
        shapes = ", ".join(p["shapes"])
        if p["files"]:
            shapes += "; files " + ", ".join(f"`{f}`" for f in p["files"])
        thresholds = p["thresholds"] or "defaults"
        print(
            f"| {cell(p['app'])} | `{p['name']}` | {cell(images)} | {cell(shapes)} "
            f"| {cell(p['failures'])} | {cell(thresholds)} | {cell(p['limits'])} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
