"""The one table that maps every DICOMweb URL of a tree to its stored name.

The writer, `dcmweb serve` and the nginx config are all made from `RESOURCES`, so the
three can never disagree about where a resource lives. Two layouts exist:

- **folder** (a local file system): a URL such as `studies/<st>/series` is also a folder,
  so list resources (QIDO) are stored as `index.json` inside it;
- **object** (S3 and other object stores, no file/folder clash): the stored key *is* the
  URL path.

With gzip on, resources marked `gzip` are stored compressed: in the folder layout their
name gets `.gz` (nginx `gzip_static`), in the object layout the key stays the URL and the
object carries `Content-Encoding: gzip`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from typing import Literal

Layout = Literal["folder", "object"]

DICOM_JSON = "application/dicom+json"
#: folders of the tree that are never served: staging of running conversions, the
#: deduplicated form, the aggregation lock (dot names are never served at all)
STAGING_DIR = ".tmp"
LOCK_NAME = ".dcmweb.lock"
DEDUP_DIR = "deduplicated"

#: what each URL parameter may be: UIDs (checked again by `p10.uids.check_uid` before
#: use), frame numbers, bulk data names (tag paths: hex digits and dots)
PARAMETERS = {
    "study": r"[0-9]+(?:\.[0-9]+)*",
    "series": r"[0-9]+(?:\.[0-9]+)*",
    "sop": r"[0-9]+(?:\.[0-9]+)*",
    "frame": r"[1-9][0-9]*",
    "name": r"[0-9A-Fa-f]+(?:\.[0-9A-Fa-f]+)*",
    #: the suffix of a stored rendered image in the folder layout (never in a URL)
    "ext": r"jpg|png",
}

Kind = Literal["qido", "metadata", "frame", "bulkdata", "dicom", "rendered", "store"]
#: the media type of a WADO-RS retrieval of DICOM objects (PS3.18 10.4, 8.7.3)
DICOM = "application/dicom"
#: rendered images (PS3.18 10.4.1.1.3/4) by their stored suffix; the folder layout names
#: them `<name>.jpg` / `<name>.png` so a static server derives the content type
RENDERED_TYPES = {"jpg": "image/jpeg", "png": "image/png"}


@dataclass(frozen=True)
class Resource:
    """One kind of DICOMweb resource: its URL, where it is stored, how it is served."""

    key: str
    #: URL path below the base URL, `{study}`-style parameters
    url: str
    #: name in the folder layout (without `.gz`); the object layout stores it at `url`
    folder_name: str
    kind: Kind
    #: stored gzip-compressed when the tree is written with gzip
    gzip: bool
    #: the key in the object layout, when it is not the URL path
    object_name: str | None = None
    #: answered for `url?<query>=<value>` with a single value
    query: str | None = None

    @property
    def parameters(self) -> tuple[str, ...]:
        return tuple(re.findall(r"{(\w+)}", self.folder_name))

    def url_path(self, **values: str) -> str:
        return self.url.format(**values)

    def stored_name(self, layout: Layout, gzip: bool, **values: str) -> str:
        """The file or object name for these parameter values."""
        if layout == "object":
            return (self.object_name or self.url).format(**values)
        name = self.folder_name.format(**values)
        return name + ".gz" if gzip and self.gzip else name

    def url_regex(self) -> str:
        """The URL path as a regular expression with named groups (nginx and tests)."""
        pattern = re.escape(self.url).replace(r"\{", "{").replace(r"\}", "}")
        for name, expression in PARAMETERS.items():
            pattern = pattern.replace("{" + name + "}", f"(?P<{name}>{expression})")
        return "^/" + pattern + "$"


_STUDY = "studies/{study}"
_SERIES = _STUDY + "/series/{series}"
_INSTANCE = _SERIES + "/instances/{sop}"

RESOURCES: tuple[Resource, ...] = (
    Resource("studies", "studies", "studies/index.json", "qido", True),
    Resource("study_metadata", _STUDY + "/metadata", _STUDY + "/metadata", "metadata", True),
    Resource("series", _STUDY + "/series", _STUDY + "/series/index.json", "qido", True),
    Resource("series_metadata", _SERIES + "/metadata", _SERIES + "/metadata", "metadata", True),
    Resource("instances", _SERIES + "/instances", _SERIES + "/instances/index.json", "qido",
             True),
    Resource("instance_metadata", _INSTANCE + "/metadata", _INSTANCE + "/metadata", "metadata",
             True),
    Resource("frame", _INSTANCE + "/frames/{frame}", _INSTANCE + "/frames/{frame}", "frame",
             False),
    Resource("bulkdata", _INSTANCE + "/bulkdata/{name}", _INSTANCE + "/bulkdata/{name}",
             "bulkdata", False),
    # QIDO-RS across levels: every series of the tree (kept beside the study list), every
    # instance of a study
    Resource("all_series", "series", "series/index.json", "qido", True),
    Resource("study_instances", _STUDY + "/instances", _STUDY + "/instances/index.json", "qido",
             True),
    # WADO-RS retrieval of an instance: its P10 in one multipart part, written only by
    # `convert --part10` (the instance URL is a folder, so the file lives inside it);
    # `dcmweb serve` streams the same bytes rebuilt from the tree with or without it
    Resource("instance_dicom", _INSTANCE, _INSTANCE + "/part10", "dicom", False),
    # rendered resources (--rendered, --thumbnails): `frames/<n>` is a file in the folder
    # layout, so rendered frames live in `rendered-frames/`; `{ext}` is the stored suffix
    Resource("rendered", _INSTANCE + "/rendered", _INSTANCE + "/rendered.{ext}", "rendered",
             False),
    Resource("rendered_frame", _INSTANCE + "/frames/{frame}/rendered",
             _INSTANCE + "/rendered-frames/{frame}.{ext}", "rendered", False),
    Resource("instance_thumbnail", _INSTANCE + "/thumbnail", _INSTANCE + "/thumbnail.{ext}",
             "rendered", False),
    Resource("series_thumbnail", _SERIES + "/thumbnail", _SERIES + "/thumbnail.{ext}",
             "rendered", False),
    Resource("study_thumbnail", _STUDY + "/thumbnail", _STUDY + "/thumbnail.{ext}",
             "rendered", False),
)
BY_KEY = {resource.key: resource for resource in RESOURCES}

#: `GET /studies?StudyInstanceUID=<st>` with one UID is answered from the study's own
#: record, so static servers (which cannot filter) still answer the query OHIF sends
STUDY_RECORD = Resource("study_record", "studies", _STUDY + "/index.json", "qido", True,
                        object_name=_STUDY + "/index.json", query="StudyInstanceUID")


#: WADO-RS retrieval of a whole study or series: nothing is stored for them (a static
#: server cannot join the instances' files); `dcmweb serve` streams the instances below
#: the folder `folder_name` one after another
RETRIEVALS: tuple[Resource, ...] = (
    Resource("study_dicom", _STUDY, _STUDY, "dicom", False),
    Resource("series_dicom", _SERIES, _SERIES, "dicom", False),
)


#: STOW-RS (PS3.18 10.5): the targets `dcmweb serve --stow` takes `POST`s of
#: `multipart/related; type="application/dicom"` at. Nothing is stored under these names
#: (instances land at their own URLs above); a static server never accepts a POST (nginx
#: answers 405), so only `dcmweb serve` routes them
STORES: tuple[Resource, ...] = (
    Resource("store_instances", "studies", "studies", "store", False),
    Resource("store_study_instances", _STUDY, _STUDY, "store", False),
)


def resource(key: str) -> Resource:
    return BY_KEY[key] if key != STUDY_RECORD.key else STUDY_RECORD


def url_path(key: str, **values: str) -> str:
    return resource(key).url_path(**values)


def stored_name(key: str, layout: Layout = "folder", gzip: bool = False, **values: str) -> str:
    return resource(key).stored_name(layout, gzip, **values)


def instance_file(key: str, gzip: bool = False, **values: str) -> str:
    """The name, inside its instance folder (folder layout), of an instance-level resource
    (`metadata.gz`, `rendered-frames/2.jpg`, ...): what a worker stages."""
    name = stored_name(key, "folder", gzip, **values, study="0", series="0", sop="0")
    return name[len(instance_path("0", "0", "0")) + 1:]


def study_path(study: str) -> str:
    return _STUDY.format(study=study)


def series_path(study: str, series: str) -> str:
    return _SERIES.format(study=study, series=series)


def instance_path(study: str, series: str, sop: str) -> str:
    """The instance's URL path, also its folder in the folder layout."""
    return _INSTANCE.format(study=study, series=series, sop=sop)


@cache
def _matchers() -> list[tuple[Resource, re.Pattern[str]]]:
    """Compiled on first use: 33 patterns are ~10 ms of start-up, which a conversion into
    a folder never uses (`serve` does, and publishing into an object store)."""
    return [(r, re.compile(r.url_regex())) for r in RESOURCES]


def match(path: str) -> tuple[Resource, dict[str, str]] | None:
    """The resource a URL path (below the base, leading `/`) names, and its parameters."""
    for item, matcher in _matchers():
        found = matcher.match(path)
        if found:
            return item, found.groupdict()
    return None


def _stored_regex(resource: Resource) -> re.Pattern[str]:
    pattern = re.escape(resource.folder_name).replace(r"\{", "{").replace(r"\}", "}")
    for name, expression in PARAMETERS.items():
        pattern = pattern.replace("{" + name + "}", f"(?P<{name}>{expression})")
    return re.compile(pattern + (r"(?P<gz>\.gz)?" if resource.gzip else "") + "$")


@cache
def _stored_matchers() -> list[tuple[Resource, re.Pattern[str]]]:
    return [(r, _stored_regex(r)) for r in (*RESOURCES, STUDY_RECORD)]


def match_stored(name: str) -> tuple[Resource, dict[str, str], bool] | None:
    """The resource a folder-layout name (relative to the root) stores, its parameters, and
    whether it is the gzip form; None for names that are no DICOMweb resource (`info`,
    plugin results, the deduplicated form, staging)."""
    for item, matcher in _stored_matchers():
        found = matcher.match(name)
        if found:
            values = {k: v for k, v in found.groupdict().items() if k != "gz"}
            return item, values, found.group("gz") is not None if item.gzip else False
    return None


def request_target(resource: Resource, values: dict[str, str]) -> str:
    """The request (path and query) a client sends for `resource` with these values."""
    if resource.query:
        return f"/{resource.url}?{resource.query}={values['study']}"
    return "/" + resource.url_path(**values)
