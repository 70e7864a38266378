"""The OHIF viewer at /ohif/: installed from a checked tarball, served with this archive's DICOMweb, behind the session."""

import base64
import hashlib
import io
import tarfile

import pytest

from console import ohif

INDEX = ('<html><head><script>window.PUBLIC_URL="/"</script><script src="/app-config.js"></script>'
         '<link href="/app.bundle.css"><script src="//cdn.example.org/x.js"></script></head>'
         '<body><script defer src="/app.bundle.abc.js"></script></body></html>')


RUNTIME = b'(() => {\n__webpack_require__.p = "/";\n})();'


def tarball(path, members):
    with tarfile.open(path, "w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def integrity(path):
    return "sha512-" + base64.b64encode(hashlib.sha512(path.read_bytes()).digest()).decode()


@pytest.fixture
def ohif_dir(settings, tmp_path):
    settings.OHIF_DIR = tmp_path / "ohif"
    return settings.OHIF_DIR


@pytest.fixture
def installed(ohif_dir, tmp_path, monkeypatch):
    path = tarball(tmp_path / "app.tgz", {
        "package/dist/index.html": INDEX.encode(), "package/dist/app.bundle.abc.js": RUNTIME,
        "package/dist/12.bundle.def.js": b"chunk", "package/dist/zz.wasm": b"\0asm", "package/README.md": b"x"})
    monkeypatch.setattr(ohif, "INTEGRITY", integrity(path))
    return ohif.fetch(path)


def test_the_dist_is_installed_from_a_tarball_that_matches_the_pinned_integrity(installed):
    assert sorted(p.name for p in installed.iterdir()) == ["12.bundle.def.js", "app.bundle.abc.js", "index.html",
                                                            "zz.wasm"]
    assert installed.name == ohif.VERSION


def test_a_tarball_that_differs_from_the_pinned_integrity_is_refused(ohif_dir, tmp_path):
    path = tarball(tmp_path / "other.tgz", {"package/dist/index.html": b"<html>evil</html>"})
    with pytest.raises(ohif.OhifUnavailable, match="integrity"):
        ohif.fetch(path)
    assert not ohif.is_installed()


def test_members_outside_the_dist_never_land_outside_it(ohif_dir, tmp_path, monkeypatch):
    path = tarball(tmp_path / "odd.tgz", {"package/dist/index.html": INDEX.encode(),
                                           "package/dist/../../../escaped.txt": b"x"})
    monkeypatch.setattr(ohif, "INTEGRITY", integrity(path))
    with pytest.raises(Exception):
        ohif.fetch(path)
    assert not (tmp_path / "escaped.txt").exists()


def test_index_loads_from_ohif_and_the_config_points_at_this_archive(installed, admin):
    page = admin.get("/ohif/viewer", {"StudyInstanceUIDs": "1.2.3"})
    html = b"".join(page.streaming_content).decode()
    assert page.status_code == 200
    assert 'window.PUBLIC_URL="/ohif/"' in html and 'src="/ohif/app-config.js"' in html
    assert 'href="/ohif/app.bundle.css"' in html and 'src="//cdn.example.org/x.js"' in html
    config = admin.get("/ohif/app-config.js").content.decode()
    assert '"routerBasename": "/ohif"' in config
    assert '"qidoRoot": "http://testserver/dicom-web"' in config and '"wadoRoot": "http://testserver/dicom-web"' in config


def test_the_bare_prefix_is_the_viewer_not_an_api_route(installed, admin):
    response = admin.get("/ohif/")
    assert response.status_code == 200 and b"/ohif/app-config.js" in b"".join(response.streaming_content)


def test_files_and_chunks_asked_from_deeper_routes(installed, admin):
    bundle = admin.get("/ohif/app.bundle.abc.js")
    # The webpack runtime loads its chunks from /ohif/, not from the site root.
    assert b"".join(bundle.streaming_content) == RUNTIME.replace(b'p = "/"', b'p = "/ohif/"')
    assert "immutable" in bundle["Cache-Control"]
    assert b"".join(admin.get("/ohif/viewer/12.bundle.def.js").streaming_content) == b"chunk"
    assert admin.get("/ohif/zz.wasm")["Content-Type"] == "application/wasm"
    assert admin.get("/ohif/sw.js").content == b""


def test_the_viewer_needs_a_session(installed, client):
    response = client.get("/ohif/viewer")
    assert response.status_code == 302 and "/ui/login/" in response["Location"]


def test_the_console_study_page_links_to_the_study_in_ohif(admin, storage_dir):
    from archive import ingest
    from archive.models import Study
    from tests.dicomgen import make_instance

    ingest.store(make_instance(patient_id="OHIF-LINK"), ingest.Origin.http("127.0.0.1", "admin"))
    study = Study.objects.get()
    page = admin.get(f"/ui/studies/{study.public_id}/").content.decode()
    assert f'href="/ohif/viewer?StudyInstanceUIDs={study.study_instance_uid}"' in page


def test_not_installed_says_how_to_install(ohif_dir, admin):
    response = admin.get("/ohif/")
    assert response.status_code == 503
    assert "manage.py ohif" in response.content.decode()
