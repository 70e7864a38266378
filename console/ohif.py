"""The OHIF Viewer v3, built in at /ohif/: fetched once, served with this archive's DICOMweb.

`@ohif/app` on npm ships a built `dist/`; `fetch()` (the setup step, and
`manage.py ohif`) gets the pinned version through npm, whose cache keeps it for
offline use, checks the tarball against the pinned integrity, and unpacks the
dist under PACS_OHIF_DIR. The view serves those files with a configuration
written here: one DICOMweb data source at this archive's /dicom-web, same
origin, so the browser's console session is the viewer's (no second login).

The dist is built for the site root (`PUBLIC_URL="/"`, webpack's public path
"/"): at install, index.html is rewritten to load from /ohif/ and the webpack
runtime to load its chunks from there; the router gets /ohif as its base name.
"""

import base64
import hashlib
import json
import logging
import mimetypes
import re
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

from django.conf import settings
from django.http import FileResponse, Http404, HttpResponse

from console.access import console_view

log = logging.getLogger("pacsweb.console")

PACKAGE = "@ohif/app"
VERSION = "3.13.2"
# The npm registry's dist.integrity of that version (`npm view @ohif/app@3.13.2 dist.integrity`).
INTEGRITY = "sha512-WZdxmpmG7rqFgW9ZJLcbgr3XCtLi1KDNPoMaeY5PPe6j4G4fjEjjkycZM6C6Zk2F87BKxFfpq+jd5xXZB9E8EA=="
PREFIX = "/ohif/"
WEBPACK_PUBLIC_PATH = b'__webpack_require__.p = "/";'


class OhifUnavailable(Exception):
    """The viewer could not be fetched or checked; the message says why and what to do."""


def installed_dir():
    return Path(settings.OHIF_DIR) / VERSION


def is_installed():
    return (installed_dir() / "index.html").is_file()


def fetch(tarball=None):
    """Install the pinned OHIF dist (from `tarball`, a path, or through npm); its directory.

    Nothing is replaced until the new copy is complete and checked.
    """
    target = installed_dir()
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        if tarball is None:
            tarball = _npm_pack(work)
        tarball = Path(tarball)
        _check_integrity(tarball)
        unpacked = work / "dist"
        _extract_dist(tarball, unpacked)
        if not (unpacked / "index.html").is_file():
            raise OhifUnavailable(f"{tarball} has no package/dist/index.html: not a built @ohif/app")
        _serve_from_prefix(unpacked)
        target.parent.mkdir(parents=True, exist_ok=True)
        # Staged beside the target (same filesystem) under a name of its own, so
        # that two installs at once (nodes of one machine) do not mix their files.
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
        shutil.copytree(unpacked, staging, dirs_exist_ok=True)
        shutil.rmtree(target, ignore_errors=True)
        try:
            staging.rename(target)
        except OSError:
            # Another install finished first with the same checked files.
            shutil.rmtree(staging, ignore_errors=True)
    return target


def _npm_pack(work):
    npm = shutil.which("npm")
    if npm is None:
        raise OhifUnavailable("npm is not installed: install it, or fetch the tarball elsewhere with "
                              f"`npm pack {PACKAGE}@{VERSION}` and run `manage.py ohif --tarball FILE`")
    try:
        result = subprocess.run([npm, "pack", f"{PACKAGE}@{VERSION}", "--pack-destination", str(work)],
                                capture_output=True, text=True, timeout=600)
    except subprocess.TimeoutExpired:
        raise OhifUnavailable("npm pack did not finish within 10 minutes")
    if result.returncode != 0:
        raise OhifUnavailable(f"npm pack {PACKAGE}@{VERSION} failed: {result.stderr.strip()[-500:]}")
    packed = list(work.glob("*.tgz"))
    if len(packed) != 1:
        raise OhifUnavailable(f"npm pack left {len(packed)} tarballs, expected one")
    return packed[0]


def _check_integrity(tarball):
    algorithm, _, expected = INTEGRITY.partition("-")
    digest = hashlib.new(algorithm)
    with open(tarball, "rb") as stream:
        while chunk := stream.read(1024 * 1024):
            digest.update(chunk)
    if base64.b64encode(digest.digest()).decode() != expected:
        raise OhifUnavailable(f"{tarball} is not {PACKAGE}@{VERSION}: its {algorithm} differs from the pinned integrity")


def _extract_dist(tarball, destination):
    with tarfile.open(tarball, "r:gz") as archive:
        members = [m for m in archive.getmembers() if m.name.startswith("package/dist/") and (m.isfile() or m.isdir())]
        for member in members:
            member.name = member.name[len("package/dist/"):]
        # The "data" filter refuses absolute paths, "..", links out of the tree, devices.
        archive.extractall(destination, members=[m for m in members if m.name], filter="data")


def _serve_from_prefix(dist):
    index = dist / "index.html"
    html = index.read_text(encoding="utf-8").replace('window.PUBLIC_URL="/"', f'window.PUBLIC_URL="{PREFIX}"')
    # Root-relative URLs, not protocol-relative ones (//host/...).
    index.write_text(re.sub(r'\b(href|src)="/(?!/)', rf'\1="{PREFIX}', html), encoding="utf-8")
    for script in dist.glob("*.js"):
        code = script.read_bytes()
        if WEBPACK_PUBLIC_PATH in code:
            script.write_bytes(code.replace(WEBPACK_PUBLIC_PATH, f'__webpack_require__.p = "{PREFIX}";'.encode()))


def app_config(request):
    """OHIF's window.config: this archive's DICOMweb, from the page's own origin."""
    root = f"{request.scheme}://{request.get_host()}"
    dicomweb = {
        "name": "pacsweb",
        "wadoUriRoot": f"{root}/wado",
        "qidoRoot": f"{root}/dicom-web",
        "wadoRoot": f"{root}/dicom-web",
        "qidoSupportsIncludeField": True,
        "supportsReject": False,
        "imageRendering": "wadors",
        "thumbnailRendering": "wadors",
        "enableStudyLazyLoad": True,
        "supportsFuzzyMatching": True,
        "supportsWildcard": True,
        "staticWado": False,
        "singlepart": "",
        "bulkDataURI": {"enabled": True},
        "omitQuotationForMultipartRequest": True,
    }
    config = {
        "routerBasename": PREFIX.rstrip("/"),
        "showStudyList": True,
        "maxNumberOfWebWorkers": 2,
        "showWarningMessageForCrossOrigin": False,
        "showLoadingIndicator": True,
        "strictZSpacingForVolumeViewport": True,
        "extensions": [],
        "modes": [],
        "defaultDataSourceName": "pacsweb",
        "dataSources": [{
            "namespace": "@ohif/extension-default.dataSourcesModule.dicomweb",
            "sourceName": "pacsweb",
            "configuration": {"friendlyName": "pacsweb", **dicomweb},
        }],
    }
    return f"window.config = {json.dumps(config, indent=2)};\n"


@console_view()
def viewer(request, path=""):
    """GET /ohif/<path>: the viewer's files; any route of its single-page app gets index.html."""
    if not is_installed():
        return HttpResponse(
            "The OHIF viewer is not installed on this node. Run `python manage.py ohif` once with access to "
            "the npm registry (see the README, \"OHIF viewer\").", status=503, content_type="text/plain")
    if path == "app-config.js":
        return HttpResponse(app_config(request), content_type="application/javascript")
    root = installed_dir().resolve()
    candidate = (root / path).resolve() if path else root / "index.html"
    if root not in candidate.parents and candidate != root / "index.html":
        raise Http404("outside the viewer")
    if path in ("sw.js", "init-service-worker.js"):
        # No service worker: it would cache the archive's answers across sessions.
        return HttpResponse("", content_type="application/javascript")
    if not candidate.is_file() and "." in candidate.name and (root / candidate.name).is_file():
        # A chunk asked relative to a deeper route (/ohif/viewer/123.bundle.js).
        candidate = root / candidate.name
    if not candidate.is_file() or candidate.name == "index.html":
        return FileResponse(open(root / "index.html", "rb"), content_type="text/html; charset=utf-8")
    content_type = mimetypes.guess_type(candidate.name)[0] or "application/octet-stream"
    if candidate.suffix == ".wasm":
        content_type = "application/wasm"
    response = FileResponse(open(candidate, "rb"), content_type=content_type)
    # Bundles carry a content hash in their names: cache them; the rest briefly.
    response["Cache-Control"] = "private, max-age=31536000, immutable" if ".bundle." in candidate.name \
        else "private, max-age=300"
    return response
