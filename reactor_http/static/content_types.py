"""Content-Type from a file name's extension, from a fixed table.

The stdlib's ``mimetypes`` reads /etc/mime.types and the Windows registry, so
the same file could be served with different types on different machines.
This table is the whole truth instead. Text types say their charset
(RFC 9110 §8.3.1); anything unknown is application/octet-stream, which a
browser downloads rather than renders (with ``X-Content-Type-Options: nosniff``
it will not guess).
"""

DEFAULT_TYPE = "application/octet-stream"

_UTF8 = "; charset=utf-8"

CONTENT_TYPES = {
    # text
    "html": "text/html" + _UTF8,
    "htm": "text/html" + _UTF8,
    "css": "text/css" + _UTF8,
    "js": "text/javascript" + _UTF8,      # RFC 9239
    "mjs": "text/javascript" + _UTF8,
    "txt": "text/plain" + _UTF8,
    "md": "text/markdown" + _UTF8,
    "csv": "text/csv" + _UTF8,
    "xml": "text/xml" + _UTF8,
    "svg": "image/svg+xml" + _UTF8,
    "json": "application/json",
    "map": "application/json",
    "webmanifest": "application/manifest+json",
    "wasm": "application/wasm",
    "pdf": "application/pdf",
    # images
    "png": "image/png",
    "jpg": "image/jpeg",
    "jpeg": "image/jpeg",
    "gif": "image/gif",
    "webp": "image/webp",
    "avif": "image/avif",
    "ico": "image/x-icon",
    "bmp": "image/bmp",
    # fonts
    "woff": "font/woff",
    "woff2": "font/woff2",
    "ttf": "font/ttf",
    "otf": "font/otf",
    # audio and video
    "mp3": "audio/mpeg",
    "ogg": "audio/ogg",
    "wav": "audio/wav",
    "mp4": "video/mp4",
    "webm": "video/webm",
    "ogv": "video/ogg",
    # archives
    "zip": "application/zip",
    "gz": "application/gzip",
    "tar": "application/x-tar",
}


def content_type(filename):
    """The Content-Type for a file name, e.g. "style.css" -> "text/css; charset=utf-8"."""
    dot = filename.rfind(".")
    if dot <= 0:  # no extension, or a name like ".profile"
        return DEFAULT_TYPE
    return CONTENT_TYPES.get(filename[dot + 1:].lower(), DEFAULT_TYPE)
