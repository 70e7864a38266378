"""The two tables of docs/orthanc-compatibility.md, as the differential tests read them."""

import fnmatch
import re
from dataclasses import dataclass
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "orthanc-compatibility.md"
# same: answers as Orthanc; difference: answers as Orthanc but for rows of the table of
# deliberate differences; refused: pacsweb refuses it on purpose; not compared: pacsweb
# answers it but the corpus cannot (it needs a remote peer); absent: no such route on
# either (the corpus checks both answer it alike); pacsweb only: beyond Orthanc's API.
ROUTE_STATES = {"same", "difference", "refused", "not compared", "absent", "pacsweb only"}


@dataclass(frozen=True)
class Difference:
    """A row of the table of deliberate differences: `case` and `where` are globs."""

    case: str
    where: str
    kind: str
    reason: str

    def covers(self, case_id, where, kind):
        return _matches(kind, self.kind) and _matches(case_id, self.case) and _matches(where, self.where)


def _matches(text, pattern):
    """`*` and `?` are wildcards; brackets are themselves (paths write list items `[]`)."""
    return text == pattern or fnmatch.fnmatchcase(text, re.sub(r"[\[\]]", lambda m: f"[{m.group(0)}]", pattern))


def _rows(heading):
    """The cells of the table under a `## heading`, header row excepted."""
    text = DOC.read_text()
    section = text.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        if line.startswith("|") and not re.match(r"^\|[-| :]+\|$", line):
            rows.append([cell.strip().strip("`").strip() for cell in line.strip().strip("|").split("|")])
    return rows[1:]


def deliberate_differences():
    return [Difference(*row[:4]) for row in _rows("Deliberate differences")]


def routes():
    """{"GET /patients/{id}": state} of the route table."""
    answer = {}
    for row in _rows("Routes"):
        route, state = row[0], row[1]
        if state not in ROUTE_STATES:
            raise ValueError(f"{DOC.name}: route {route!r} has state {state!r}, not one of {sorted(ROUTE_STATES)}")
        answer[route] = state
    return answer
