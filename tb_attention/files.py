"""Where a logdir lives: a local folder, or any fsspec URL (s3://, gs://,
memory://, ...). The one place that knows the difference.

load() lists and reads event files here (the record parsing, tfrecord.scan,
is the same for both); the writer checks a URL logdir here before it makes
its event file, which TensorBoard's own file layer then writes (the layer its
Python loader reads with). Every failure of a remote store -- no credentials,
no such bucket, connection refused, its fsspec package not installed --
becomes one RemoteLogdirError naming the URL and the cause.

S3 endpoints: TensorBoard's S3 layer takes S3_ENDPOINT (read when
TensorBoard is imported); s3fs is given the same, so one variable serves
the writer, load() and `tensorboard` (whose Python loader reads s3://).
"""
import os
import re

# A scheme of at least two letters: "C:/runs" is a Windows path, not a URL.
_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]+)://")
_EXTRAS = {"s3": "s3", "s3a": "s3", "gs": "gcs", "gcs": "gcs"}


class RemoteLogdirError(OSError):
    """A logdir at a URL could not be reached, read or written. .url is the
    URL, .cause what went wrong (the original exception is __cause__)."""

    def __init__(self, url, cause):
        super().__init__("%s: %s" % (url, cause))
        self.url = url
        self.cause = cause


def is_url(path):
    """Whether path is a URL served by fsspec rather than a local path
    (file:// URLs count as local)."""
    m = _URL.match(os.fspath(path)) if isinstance(path, (str, os.PathLike)) else None
    return bool(m) and m.group(1).lower() != "file"


def local_path(path):
    """A local path, file:// stripped."""
    path = os.fspath(path)
    return path[len("file://"):] if path.lower().startswith("file://") else path


def _package_hint(url):
    scheme = _URL.match(url).group(1).lower()
    extra = _EXTRAS.get(scheme)
    return "pip install 'tb-attention[%s]'" % extra if extra else "install fsspec's package for %s://" % scheme


def cause(url, error):
    """What went wrong, in words, for an exception a remote store raised."""
    name = type(error).__name__
    text = str(error)
    if isinstance(error, ImportError):
        return "a package it needs is not installed (%s): %s" % (text, _package_hint(url))
    if name in ("NoCredentialsError", "PartialCredentialsError", "CredentialRetrievalError"):
        return ("no credentials (%s): set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or "
                "AWS_PROFILE" % text)
    if name in ("EndpointConnectionError", "ConnectTimeoutError", "ConnectionRefusedError",
                "ClientConnectorError", "ConnectionClosedError") or isinstance(error, ConnectionError):
        return "cannot connect to the store (%s)" % text
    if name == "NoSuchBucket" or (isinstance(error, FileNotFoundError) and "bucket" in text.lower()):
        return "no such bucket (%s)" % text
    response = getattr(error, "response", None)
    code = response.get("Error", {}).get("Code") if isinstance(response, dict) else None
    if code:
        return "%s (%s)" % (code, text)
    return "%s: %s" % (name, text)


def remote_error(url, error):
    """error as a RemoteLogdirError naming url (itself when it already is one)."""
    if isinstance(error, RemoteLogdirError):
        return error
    wrapped = RemoteLogdirError(url, cause(url, error))
    wrapped.__cause__ = error
    return wrapped


def filesystem(url):
    """(fsspec filesystem, path inside it) for a URL; RemoteLogdirError when
    its package is missing or the scheme is unknown."""
    try:
        import fsspec
        from fsspec import core
        protocol = core.split_protocol(url)[0]
        kwargs = {}
        endpoint = os.environ.get("S3_ENDPOINT")
        if protocol in ("s3", "s3a") and endpoint:
            kwargs["client_kwargs"] = {"endpoint_url": endpoint}
        fsspec.get_filesystem_class(protocol)  # ImportError naming the package, ValueError if unknown
        return core.url_to_fs(url, **kwargs)
    except ValueError as e:
        raise RemoteLogdirError(url, "no filesystem for this URL scheme (%s)" % e) from e
    except Exception as e:  # ImportError above all
        raise remote_error(url, e) from e


def names(url):
    """The names of the files right under url ([] when there are none yet).
    The writer calls it before it makes its event file, so a store that
    cannot be reached (package, credentials, bucket, endpoint) raises
    RemoteLogdirError then, not at the first upload in the background."""
    fs, path = filesystem(url)
    try:
        return sorted(p.rstrip("/").rpartition("/")[2] for p in fs.find(path, maxdepth=1))
    except Exception as e:
        raise remote_error(url, e) from e


def prepare_tensorboard_layer(url):
    """Before TensorBoard's file layer writes url: its S3 filesystem reads
    S3_ENDPOINT once, when TensorBoard is imported; give it the current one,
    as s3fs gets it (a notebook often sets the variable after importing)."""
    if _URL.match(url).group(1).lower() != "s3":
        return
    from tensorboard.compat.tensorflow_stub.io import gfile
    if not getattr(gfile, "S3_ENABLED", False):
        # without boto3 TensorBoard would hand s3:// to fsspec, ignoring S3_ENDPOINT
        raise RemoteLogdirError(url, "a package it needs is not installed (boto3, for TensorBoard's "
                                     "S3 layer): %s" % _package_hint(url))
    gfile.register_filesystem("s3", gfile.S3FileSystem())


def event_files(logdir):
    """[(run, file's URL, source for read_bytes)] of every event file under a
    URL logdir, sorted by run then name; run is "." for the logdir itself.
    RemoteLogdirError when it cannot be listed, or nothing is there."""
    fs, root = filesystem(logdir)
    try:
        found = fs.find(root)
        if not found and not fs.isdir(root):
            raise RemoteLogdirError(logdir, "no such logdir (nothing stored under it)")
    except Exception as e:
        raise remote_error(logdir, e) from e
    root = root.rstrip("/")
    out = []
    for path in found:
        rel = path[len(root):].lstrip("/") if path.startswith(root) else path
        run, _, name = rel.rpartition("/")
        if "tfevents" in name:
            out.append((run or ".", name, path))
    return [(run, fs.unstrip_protocol(path), (fs, path)) for run, _, path in sorted(out)]


def read_bytes(source):
    """The whole bytes of an event file listed by event_files."""
    fs, path = source
    try:
        return fs.cat_file(path)
    except Exception as e:
        raise remote_error(fs.unstrip_protocol(path), e) from e
