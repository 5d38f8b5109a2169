#!/usr/bin/env python3
"""Reads checkov JSON reports (run by .ci/terraform-check) and decides.

Fails when any report has a failed check or a parsing error, when a check
is skipped (`#checkov:skip=ID:reason` in a .tf file) without a reason or
without a row in the "Accepted static-scan findings" table of
terraform/README.md, and when a row of that table matches no skipped check
any more (a stale acceptance).

usage: checkov_report.py README.md LABEL=REPORT.json [LABEL=REPORT.json ...]
"""

from __future__ import annotations

import json
import re
import sys
from typing import Any

TABLE_TITLE = "## Accepted static-scan findings"


def accepted(readme: str) -> dict[tuple[str, str], str]:
    """(check ID, resource address) -> why, from the README table."""
    text = open(readme, encoding="utf-8").read()
    if TABLE_TITLE not in text:
        raise SystemExit(f"{readme}: no '{TABLE_TITLE}' section")
    section = text.split(TABLE_TITLE, 1)[1].split("\n## ", 1)[0]
    rows: dict[tuple[str, str], str] = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 3 or not re.fullmatch(r"`?CKV2?_[A-Z0-9_]+`?", cells[0]):
            continue
        address = re.search(r"`([^`]+)`", cells[1])
        if not address:
            raise SystemExit(f"{readme}: row {line!r} names no `resource.address`")
        rows[(cells[0].strip("`"), address.group(1))] = cells[2]
    return rows


def reports(path: str) -> list[dict[str, Any]]:
    data = json.load(open(path, encoding="utf-8"))
    data = data if isinstance(data, list) else [data]
    # A scan with no resource to check is a bare summary without "results".
    return [r if "results" in r else {"check_type": "terraform", "summary": r, "results": {}} for r in data]


def local_address(resource: str) -> str:
    """module.primary.aws_lb.this -> aws_lb.this."""
    return re.sub(r"^(module\.[^.\[]+(\[[^\]]*\])?\.)+", "", resource)


def main() -> int:
    readme, pairs = sys.argv[1], sys.argv[2:]
    table = accepted(readme)
    used: set[tuple[str, str]] = set()
    problems = 0
    for pair in pairs:
        label, path = pair.split("=", 1)
        passed = failed = skipped = parse_errors = 0
        lines: list[str] = []
        for rep in reports(path):
            summary = rep.get("summary", {})
            passed += summary.get("passed", 0)
            parse_errors += summary.get("parsing_errors", 0)
            results = rep.get("results", {})
            for f in results.get("parsing_errors", []):
                lines.append(f"  PARSE ERROR {f}")
            for r in results.get("failed_checks", []):
                failed += 1
                lines.append(f"  FAILED {r['check_id']} {r['resource']} ({r['file_path']}:"
                             f"{'-'.join(map(str, r['file_line_range']))}): {r['check_name']}")
            for r in results.get("skipped_checks", []):
                reason = (r.get("check_result") or {}).get("suppress_comment") or ""
                key = (r["check_id"], local_address(r["resource"]))
                if key in table:
                    used.add(key)
                if not reason.strip() or reason.strip().lower() == "no comment provided":
                    lines.append(f"  FAILED skip of {key[0]} on {r['resource']} gives no reason")
                    failed += 1
                elif key not in table:
                    lines.append(f"  FAILED skip of {key[0]} on {r['resource']} is not in {readme} "
                                 f"('{TABLE_TITLE[3:]}')")
                    failed += 1
                else:
                    skipped += 1
                    lines.append(f"  accepted {key[0]} on {r['resource']}: {reason}")
        problems += failed + parse_errors
        print(f"checkov {label}: {passed} passed, {failed} failed, {skipped} accepted"
              + (f", {parse_errors} files not parsed" if parse_errors else ""))
        for line in lines:
            print(line)
    for key in sorted(set(table) - used):
        print(f"FAILED: {readme} accepts {key[0]} on {key[1]}, but no scan skipped it (stale row?)")
        problems += 1
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
