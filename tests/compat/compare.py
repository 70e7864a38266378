"""What differs between Orthanc's answer and pacsweb's to one request.

A difference is (where, kind, detail): `where` is "status", "content-type", "body", or
a path into the JSON answer ("MainDicomTags.PatientName", "[].ID", "Changes[].Seq";
list items are all "[]"), `kind` one of status, content-type, bytes, missing (Orthanc
has it, pacsweb not), extra (pacsweb has it, Orthanc not), type, value, length.
"""

import json
import os

# Members whose values depend on when or where a request ran, not on what was stored:
# their presence and type are compared, their values are not.
VOLATILE = {
    "LastUpdate", "ReceptionDate", "FileUuid", "Uuid", "Date", "Seq", "Last", "CreationTime", "CompletionTime",
    "Timestamp", "EffectiveRuntime", "ElapsedTime",
    "HttpUsername",  # each server has its own user
}
# The metadata items that hold a time, on /metadata/{name}.
VOLATILE_METADATA = {"ReceptionDate", "LastUpdate"}


def differences(case, orthanc, pacsweb):
    """orthanc and pacsweb are (status, content type, body bytes)."""
    # A "shape" case compares keys and types only: values that depend on what ran before.
    found = []
    if orthanc[0] != pacsweb[0]:
        return [("status", "status", f"{orthanc[0]} != {pacsweb[0]}")]
    # Error bodies are compared by status only: their words are each server's own.
    if orthanc[0] >= 400 or case.compare == "status" or case.method == "DELETE" and orthanc[0] >= 300:
        return found
    o_type, p_type = (_media_type(answer[1]) for answer in (orthanc, pacsweb))
    if o_type != p_type and not ({o_type, p_type} <= {"application/json", "text/plain", ""} and case.compare == "json"):
        found.append(("content-type", "content-type", f"{o_type} != {p_type}"))
    if case.compare == "type":
        return found
    if case.compare == "bytes":
        name = case.path.rstrip("/").rsplit("/", 1)[-1]
        if orthanc[2] != pacsweb[2] and name not in VOLATILE_METADATA:
            found.append(("body", "bytes", f"{_shorten(orthanc[2])} != {_shorten(pacsweb[2])}"))
        return found
    o_json, p_json = _json(orthanc[2]), _json(pacsweb[2])
    if o_json is _NOT_JSON or p_json is _NOT_JSON:
        if orthanc[2] != pacsweb[2]:
            found.append(("body", "bytes", f"{_shorten(orthanc[2])} != {_shorten(pacsweb[2])}"))
        return found
    _compare(o_json, p_json, "", found, _EVERY_KEY if case.compare == "shape" else VOLATILE | set(case.volatile))
    # One line per (where, kind): a list of 100 instances differing alike is one difference.
    unique = {}
    for where, kind, detail in found:
        unique.setdefault((where, kind), detail)
    return [(where, kind, detail) for (where, kind), detail in unique.items()]


_NOT_JSON = object()


class _EveryKey:
    """The volatile set of a "shape" case: no member's value is compared."""

    def __contains__(self, key):
        return True


_EVERY_KEY = _EveryKey()


def _json(data):
    try:
        return json.loads(data) if data else None
    except ValueError:
        return _NOT_JSON


def _media_type(content_type):
    return content_type.split(";")[0].strip().lower()


def _shorten(value, limit=120):
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} characters)"


def _type(value):
    return {dict: "object", list: "array", str: "string", bool: "boolean", int: "number", float: "number",
            type(None): "null"}[type(value)]


def _compare(o, p, where, found, volatile):
    if _type(o) != _type(p):
        found.append((where or "body", "type", f"{_type(o)} {_shorten(json.dumps(o))} != {_type(p)} {_shorten(json.dumps(p))}"))
        return
    if isinstance(o, dict):
        for key in o.keys() - p.keys():
            found.append((_join(where, key), "missing", f"Orthanc has {_shorten(json.dumps(o[key]))}"))
        for key in p.keys() - o.keys():
            found.append((_join(where, key), "extra", f"pacsweb has {_shorten(json.dumps(p[key]))}"))
        for key in o.keys() & p.keys():
            if key in volatile and not isinstance(o[key], (dict, list)):
                if _type(o[key]) != _type(p[key]):
                    found.append((_join(where, key), "type", f"{_type(o[key])} != {_type(p[key])}"))
                continue
            _compare(o[key], p[key], _join(where, key), found, volatile)
        return
    if isinstance(o, list):
        if len(o) != len(p):
            found.append((where or "body", "length", f"{len(o)} items != {len(p)}: {_shorten(json.dumps(o))} != {_shorten(json.dumps(p))}"))
            return
        o, p = _canonical(o), _canonical(p)
        for a, b in zip(o, p):
            _compare(a, b, where + "[]", found, volatile)
        return
    if o != p and volatile is not _EVERY_KEY:
        a, b = json.dumps(o), json.dumps(p)
        same = len(os.path.commonprefix([a, b]))
        if same > 40:  # long values that share a beginning (URLs, UIDs): show where they part
            a, b = "..." + a[same - 10:], "..." + b[same - 10:]
        found.append((where or "body", "value", f"{_shorten(a)} != {_shorten(b)}"))


def _canonical(items):
    """Lists whose order neither server promises, in one order: ids, and DICOM JSON
    datasets by their UIDs."""
    def key(item):
        if isinstance(item, dict):
            if "ID" in item:
                rest = {k: v for k, v in item.items() if k not in VOLATILE}
                return str(item["ID"]) + json.dumps(rest, sort_keys=True)
            uids = [item.get(tag, {}).get("Value", [""])[0] if isinstance(item.get(tag), dict) else ""
                    for tag in ("0020000D", "0020000E", "00080018")]
            return "|".join(str(u) for u in uids)
        return json.dumps(item, sort_keys=True)
    return sorted(items, key=key)


def _join(where, key):
    return f"{where}.{key}" if where else key
