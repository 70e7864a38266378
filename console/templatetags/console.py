"""Template filters and tags of the console: DICOM values for people, sizes, durations."""

import datetime

from django import template
from django.utils import timezone
from django.utils.html import format_html

register = template.Library()


@register.filter
def dicom_date(value):
    """20260115 → 2026-01-15, and the ACR-NEMA form 1994.11.05 too (PS3.5 6.2, retired
    DA); anything else unchanged, empty → an em dash."""
    text = str(value or "").strip()
    if len(text) == 10 and text[4] == text[7] == "." and (text[:4] + text[5:7] + text[8:]).isdigit():
        text = text.replace(".", "")
    if len(text) == 8 and text.isdigit():
        return f"{text[:4]}-{text[4:6]}-{text[6:]}"
    return text or "—"


@register.filter
def dicom_time(value):
    """101500.123 → 10:15:00, and the ACR-NEMA form 10:15:00.123 too."""
    text = str(value or "").strip().split(".")[0].replace(":", "")
    if len(text) >= 4 and text.isdigit():
        parts = [text[i:i + 2] for i in range(0, min(len(text), 6), 2)]
        return ":".join(parts)
    return text


@register.filter
def person(value):
    """DOE^JANE^^DR → DOE, JANE DR (DICOM person names, PS3.5 6.2)."""
    text = str(value or "").strip()
    if not text:
        return "—"
    alphabetic = text.split("=")[0]
    parts = [p.strip() for p in alphabetic.split("^")]
    family = parts[0] if parts else ""
    rest = " ".join(p for p in parts[1:] if p)
    if family and rest:
        return f"{family}, {rest}"
    return family or rest or text


@register.filter
def multi(value):
    """A multi-valued DICOM string (CT\\PT) for reading: CT, PT."""
    return ", ".join(v for v in str(value or "").split("\\") if v) or "—"


@register.filter
def sex(value):
    return {"F": "female", "M": "male", "O": "other"}.get(str(value or "").strip().upper(), "—")


@register.filter
def age(birth_date, on=None):
    """Age in years from a DICOM date (on a DICOM date, default today); empty when unknown."""
    text = str(birth_date or "").strip()
    if len(text) != 8 or not text.isdigit():
        return ""
    try:
        born = datetime.date(int(text[:4]), int(text[4:6]), int(text[6:]))
        if on and len(str(on)) == 8:
            day = datetime.date(int(str(on)[:4]), int(str(on)[4:6]), int(str(on)[6:]))
        else:
            day = timezone.localdate()
    except ValueError:
        return ""
    years = day.year - born.year - ((day.month, day.day) < (born.month, born.day))
    return f"{years} y" if years >= 0 else ""


@register.filter
def bytes_size(value):
    """1536 → 1.5 KB; decimal-free for bytes."""
    try:
        size = float(value or 0)
    except (TypeError, ValueError):
        return "—"
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1024 or unit == "TB":
            return f"{int(size)} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TB"


@register.filter
def duration(seconds):
    """3725 → 1 h 2 min; 42 → 42 s."""
    try:
        seconds = int(float(seconds or 0))
    except (TypeError, ValueError):
        return "—"
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds} s" if seconds and minutes < 10 else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


@register.filter
def get(mapping, key):
    try:
        return mapping.get(key, "")
    except AttributeError:
        return ""


@register.simple_tag
def sort_link(request, key, label, current):
    """A column heading that sorts by `key` (and reverses when it already does)."""
    params = request.GET.copy()
    params.pop("page", None)
    active = current.lstrip("-") == key
    descending = current.startswith("-")
    params["sort"] = key if active and descending else ("-" + key if active else key)
    arrow = ("▼" if descending else "▲") if active else ""
    return format_html('<a class="sort{}" href="?{}" aria-sort="{}">{} <span aria-hidden="true">{}</span></a>',
                       " active" if active else "", params.urlencode(),
                       ("descending" if descending else "ascending") if active else "none", label, arrow)


@register.simple_tag
def page_link(request, number):
    params = request.GET.copy()
    params["page"] = number
    return "?" + params.urlencode()


@register.inclusion_tag("console/_state.html")
def state(value):
    """A job, node or procedure step state as a coloured badge ("IN PROGRESS" → class in-progress)."""
    return {"value": value, "css": str(value).lower().replace(" ", "-")}
