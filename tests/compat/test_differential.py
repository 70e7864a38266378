"""Differential tests: the same request to Debian's Orthanc 1.10 and to pacsweb,
holding the same instances, must get the same answer, but for the deliberate
differences listed in docs/orthanc-compatibility.md (and every listed difference
must still occur, so the table cannot drift)."""

import json
import re

import pytest

from tests.compat import table
from tests.compat.compare import differences
from tests.compat.conftest import corpus_file_names, load_late
from tests.compat.corpus import CASES, Case

DELIBERATE = table.deliberate_differences()
UPLOADS = [Case("POST", "/instances", label=name, compare="json") for name in corpus_file_names()]
PLACEHOLDER = re.compile(r"\{([a-z_]+(?:@[^{}]+)?)\}")


def resolve(text, ids):
    def value(match):
        if match.group(1) not in ids:
            # Else both would answer 404 to the unresolved path, and agree on nothing tested.
            pytest.fail(f"{match.group(0)} names no instance that both servers hold: pick another file")
        return ids[match.group(1)]
    return PLACEHOLDER.sub(value, text)


def _listed(case_id, where, kind):
    return any(row.covers(case_id, where, kind) for row in DELIBERATE)


def _show(answer, limit=1500):
    status, content_type, body = answer
    try:
        text = json.dumps(json.loads(body), indent=1, sort_keys=True)
    except ValueError:
        text = repr(body)
    if len(text) > limit:
        text = text[:limit] + f"\n... ({len(text)} characters)"
    return f"{status} {content_type}\n{text}"


def check(pair, case, orthanc, pacsweb):
    found = differences(case, orthanc, pacsweb)
    pair.results[case.id] = found
    unexplained = [d for d in found if not _listed(case.id, d[0], d[1])]
    assert not unexplained, (
        f"{case.id}: pacsweb answers otherwise than Orthanc, and docs/orthanc-compatibility.md does not list it:\n"
        + "".join(f"  {where} ({kind}): {detail}\n" for where, kind, detail in unexplained)
        + f"--- Orthanc\n{_show(orthanc)}\n--- pacsweb\n{_show(pacsweb)}"
    )


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
def test_same_answer(pair, case):
    answers = []
    for side in (pair.orthanc, pair.pacsweb):
        ids = {**pair.ids, **pair.own_ids[side.name]}
        body = case.encoded_body()
        if body is not None and not isinstance(case.body, bytes):
            body = resolve(body.decode(), ids).encode()
        answer = side.request(case.method, resolve(case.path, ids), body, case.headers)
        if case.capture and answer[0] == 200:
            pair.own_ids[side.name][case.capture] = json.loads(answer[2])["ID"]
        answers.append(answer)
    check(pair, case, *answers)


@pytest.mark.parametrize("case", UPLOADS, ids=lambda case: case.id)
def test_upload_answer(pair, case):
    """Each file went to Orthanc when the session started; to pacsweb then if Orthanc
    stored it, else now, after every other case (see conftest.load)."""
    orthanc, pacsweb = pair.uploads[case.label]
    if pacsweb is None:
        pacsweb = load_late(pair, case.label)
    as_answer = lambda status, body: (status, "application/json", json.dumps(body).encode())  # noqa: E731
    check(pair, case, as_answer(*orthanc), as_answer(*pacsweb))


def test_every_listed_difference_still_occurs(pair):
    ran = {case.id for case in CASES + UPLOADS}
    if not ran <= pair.results.keys():
        pytest.skip("only the whole corpus shows whether a listed difference still occurs")
    stale = [row for row in DELIBERATE
             if not any(row.covers(case_id, where, kind) for case_id, found in pair.results.items()
                        for where, kind, _ in found)]
    assert not stale, "docs/orthanc-compatibility.md lists differences that no case shows any more:\n" + "".join(
        f"  {row.case} | {row.where} | {row.kind}\n" for row in stale)


def test_route_table_names_every_route_of_the_corpus():
    routes = table.routes()
    unlisted = sorted({case.route for case in CASES + UPLOADS} - routes.keys())
    assert not unlisted, "routes of the corpus missing from the route table of docs/orthanc-compatibility.md:\n" + \
        "\n".join(unlisted)


def test_every_route_the_table_says_answers_like_orthanc_is_in_the_corpus():
    covered = {case.route for case in CASES + UPLOADS}
    untested = sorted(route for route, state in table.routes().items()
                      if state in ("same", "difference", "refused", "absent") and route not in covered)
    assert not untested, "routes the table of docs/orthanc-compatibility.md lists but no case exercises:\n" + \
        "\n".join(untested)
