"""Four processes updating one metadata value with If-Match: one winner per revision."""

import multiprocessing

from tests import servers
from tests.dicomgen import make_instance

ROUNDS = 15


def contender(args):
    url, name, barrier = args
    barrier.wait()
    outcomes = []
    for n in range(ROUNDS):
        status, headers, body = servers.request(url)
        assert status == 200, f"GET {url}: {status} {body[:300]!r}"
        revision = headers["ETag"].strip('"')
        value = f"{name}-{n}".encode()
        status, headers, _ = servers.request(url, method="PUT", body=value, headers={"If-Match": f'"{revision}"'})
        outcomes.append((int(revision), status, value.decode()))
    return outcomes


def test_if_match_gives_each_revision_to_exactly_one_writer(server_factory):
    server = server_factory(workers=2, threads=4)
    status, stored = servers.request_json(server.url + "/instances", method="POST", body=make_instance())
    url = f"{server.url}/studies/{stored['ParentStudy']}/metadata/Owner"
    assert servers.request(url, method="PUT", body=b"nobody")[0] == 200

    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager:
        barrier = manager.Barrier(4)
        with context.Pool(4) as pool:
            results = pool.map(contender, [(url, f"p{i}", barrier) for i in range(4)])
    outcomes = [o for result in results for o in result]

    assert {status for _, status, _ in outcomes} <= {200, 409}
    winners = [(revision, value) for revision, status, value in outcomes if status == 200]
    # Each revision was won by exactly one writer: no two 200s from the same revision.
    assert len({revision for revision, _ in winners}) == len(winners)
    assert any(status == 409 for _, status, _ in outcomes)
    status, headers, final = servers.request(url)
    assert int(headers["ETag"].strip('"')) == 1 + len(winners)
    # The final value is the last winner's.
    assert final.decode() == max(winners)[1]
