"""Downloads the Criteo Kaggle archive (or any archive), resumably, and unpacks it.

  python -m pipelines.download_criteo --output_dir=DIR [--url=URL] [--sha256=HEX]

The transfer goes to <output_dir>/<archive>.part and resumes from its size with an HTTP Range
request when run again; only a complete, verified file is renamed to <archive>. A wrong
checksum, a short transfer or a server error stops with a message and leaves no file that looks
complete. The archive is then unpacked (tar, tar.gz, zip or gz) into the output directory, and
the conversion command to run next is printed.
"""
from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import sys
import tarfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile

from absl import app, flags

from ctr_tf import markers

# Criteo's public address of the Kaggle Display Advertising Challenge data (about 4.3 GB; it
# unpacks to train.txt, test.txt and readme.txt). Its SHA-256 is not pinned here: pass --sha256
# to verify; without it the digest is printed so that it can be recorded.
CRITEO_KAGGLE_URL = "https://go.criteo.net/criteo-research-kaggle-display-advertising-challenge-dataset.tar.gz"
CHUNK = 1 << 20


class DownloadError(RuntimeError):
    """The download cannot complete; the message says why and what was left."""


def archive_name(url: str) -> str:
    name = os.path.basename(urllib.parse.urlparse(url).path)
    if not name:
        raise DownloadError(f"--url={url!r} names no file")
    return name


def _progress(done: int, total: int | None, t0: float, start: int):
    rate = (done - start) / max(time.time() - t0, 1e-6)
    if total:
        width = 30
        filled = int(width * done / total)
        text = f"\r[{'#' * filled}{'.' * (width - filled)}] {done / 2**20:,.1f}/{total / 2**20:,.1f} MiB  {rate / 2**20:,.1f} MiB/s"
    else:
        text = f"\r{done / 2**20:,.1f} MiB  {rate / 2**20:,.1f} MiB/s"
    print(text, end="", file=sys.stderr, flush=True)


def fetch(url: str, dest: str, sha256: str = "", progress: bool = True, timeout: float = 60.0) -> str:
    """Downloads url to dest (resuming dest.part), checks the size the server announced and the
    SHA-256 when given; returns the hex digest of the complete file."""
    part = dest + ".part"
    have = os.path.getsize(part) if os.path.exists(part) else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:  # the part file is already whole
            response = None
        else:
            raise DownloadError(f"{url}: the server answered HTTP {e.code} {e.reason}; "
                                f"{'the partial download ' + part + ' is kept for a retry' if have else 'nothing was saved'}") from None
    except (urllib.error.URLError, OSError) as e:
        raise DownloadError(f"{url}: {getattr(e, 'reason', e)}") from None
    if response is not None:
        with response:
            if have and response.status != 206:
                have = 0  # the server ignored the range: start again
            length = response.headers.get("Content-Length")
            total = have + int(length) if length is not None else None
            t0 = time.time()
            done = have
            try:
                with open(part, "ab" if have else "wb") as f:
                    while True:
                        chunk = response.read(CHUNK)
                        if not chunk:
                            break
                        f.write(chunk)
                        done += len(chunk)
                        if progress:
                            _progress(done, total, t0, have)
            except (OSError, ConnectionError) as e:
                raise DownloadError(f"{url}: the transfer broke off after {done:,} bytes ({e}); run the "
                                    f"same command again to resume from {part}") from None
            finally:
                if progress:
                    print(file=sys.stderr)
            if total is not None and done != total:
                raise DownloadError(f"{url}: the transfer ended after {done:,} of {total:,} bytes; run the same "
                                    f"command again to resume from {part}")
    digest = hashlib.sha256()
    with open(part, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            digest.update(block)
    hexdigest = digest.hexdigest()
    if sha256 and hexdigest != sha256.lower():
        os.remove(part)
        raise DownloadError(f"{url}: SHA-256 {hexdigest} does not match --sha256={sha256}; the download was "
                            "removed (a corrupt or different file)")
    os.replace(part, dest)
    return hexdigest


def unpack(archive: str, out_dir: str) -> list[str]:
    """Unpacks a tar (any compression), zip or single .gz into out_dir; returns the files written."""
    if tarfile.is_tarfile(archive):
        with tarfile.open(archive) as tar:
            members = [m for m in tar.getmembers() if m.isfile()]
            tar.extractall(out_dir, members=members, filter="data")
            return [os.path.join(out_dir, m.name) for m in members]
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as z:
            z.extractall(out_dir)
            return [os.path.join(out_dir, n) for n in z.namelist() if not n.endswith("/")]
    if archive.endswith(".gz"):
        target = archive[:-3]
        with gzip.open(archive, "rb") as src, open(target + ".tmp", "wb") as dst:
            shutil.copyfileobj(src, dst, CHUNK)
        os.replace(target + ".tmp", target)
        return [target]
    return [archive]


def download(url: str, out_dir: str, sha256: str = "", progress: bool = True) -> list[str]:
    markers.mark(out_dir, "download")
    dest = os.path.join(out_dir, archive_name(url))
    if os.path.exists(dest) and not sha256:
        print(f"{dest} is already downloaded", flush=True)
    else:
        if os.path.exists(dest):
            os.replace(dest, dest + ".part")  # verify again what is there
        digest = fetch(url, dest, sha256, progress)
        print(f"downloaded {dest} ({os.path.getsize(dest):,} bytes, SHA-256 {digest}"
              f"{', verified' if sha256 else ', not verified: pass --sha256 to check it'})", flush=True)
    try:
        files = unpack(dest, out_dir)
    except (tarfile.TarError, zipfile.BadZipFile, OSError, EOFError) as e:
        raise DownloadError(f"{dest}: cannot unpack ({e})") from None
    return files


def define_flags():
    """The command's flags, defined when it runs (tests import its functions)."""
    flags.DEFINE_string("output_dir", None, "Where the archive goes and is unpacked.")
    flags.DEFINE_string("url", CRITEO_KAGGLE_URL, "The archive's address (Criteo's public Kaggle archive by default).")
    flags.DEFINE_string("sha256", "", "Expected SHA-256 of the archive; a mismatch is an error.")
    flags.DEFINE_boolean("progress", True, "Show a progress bar on stderr.")


def main(argv):
    del argv
    f = flags.FLAGS
    if not f.output_dir:
        sys.exit("download_criteo: error: --output_dir is required")
    try:
        files = download(f.url, f.output_dir, f.sha256, f.progress)
    except DownloadError as e:
        sys.exit(f"download_criteo: error: {e}")
    data = [p for p in files if os.path.basename(p) in ("train.txt", "train.csv", "train")] or files
    print("unpacked: " + ", ".join(files))
    print("next:\n  python -m pipelines.criteo_to_tfrecords "
          f"--input={data[0]} --output_dir={os.path.join(f.output_dir, 'tfrecords')}")


if __name__ == "__main__":
    define_flags()
    app.run(main)
