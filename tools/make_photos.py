"""Make the course's real photos (assets/images/photos/) from the ones scikit-image bundles.

    python tools/make_photos.py                      # from an installed scikit-image 0.26
    python tools/make_photos.py --source WHEEL.whl   # or straight from its wheel (no install):
                                                     #   pip download scikit-image==0.26.0 --no-deps -d /tmp/sk
    python tools/make_photos.py --source DIR         # or from a folder holding skimage/data's files

For each photo of ``vlmstudy.photos.CATALOGUE`` it checks the source file's SHA-256 (the copies
are made from exactly the files of scikit-image 0.26.0), resizes it so that its longest side is
384 px, writes ``NAME.jpg`` (JPEG quality 85) and then ``LICENSES.md`` with each photo's source,
author and licence. Re-running it gives the same files. scikit-image is not a course dependency:
the copies ship with the course, so nothing needs it at run time.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from vlmstudy import photos  # noqa: E402

LONGEST_SIDE = 384
QUALITY = 85


def _installed_data_dir() -> Path | None:
    import importlib.util

    spec = importlib.util.find_spec("skimage")
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent / "data"


def _reader(source: Path | None):
    """A function ``name -> bytes`` of files in skimage/data/, from a wheel or a folder."""
    if source is None:
        source = _installed_data_dir()
        if source is None:
            sys.exit("error: scikit-image is not installed; pass --source with its 0.26.0 wheel "
                     "(pip download scikit-image==0.26.0 --no-deps -d /tmp/sk) or its skimage/data folder")
    if source.is_file() and source.suffix == ".whl":
        wheel = zipfile.ZipFile(source)
        return lambda name: wheel.read(f"skimage/data/{name}")
    if source.is_dir():
        folder = source / "skimage" / "data" if (source / "skimage" / "data").is_dir() else source
        return lambda name: (folder / name).read_bytes()
    sys.exit(f"error: --source {source} is neither a scikit-image wheel (.whl) nor a folder")


def _resized_jpeg(data: bytes) -> bytes:
    from PIL import Image

    img = Image.open(io.BytesIO(data))
    img = img.convert("L" if img.mode in ("L", "I;16", "1") else "RGB")
    scale = LONGEST_SIDE / max(img.size)
    if scale < 1:
        img = img.resize((round(img.width * scale), round(img.height * scale)), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    img.save(out, "JPEG", quality=QUALITY, optimize=True)
    return out.getvalue()


def licences_markdown() -> str:
    lines = ["# Real photographs: sources and licences", "",
             "Resized copies (longest side 384 px, JPEG) of photographs bundled with scikit-image 0.26.0",
             "(`skimage.data`), made by `python tools/make_photos.py`. The licence of each is the one",
             "scikit-image states in the photo's docstring. Captions, labels and questions about them are the",
             "course's own (`vlmstudy/photos.py`).", "",
             "| file | photo | author | licence | source |", "|---|---|---|---|---|"]
    for e in photos.CATALOGUE:
        lines.append(f"| `{e.name}.jpg` | {e.title} (`{e.skimage_function}`, `{e.source_file}`) | {e.author} | "
                     f"{e.licence} | {e.origin} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", type=Path, help="scikit-image 0.26.0 wheel or skimage/data folder "
                                                    "(default: the installed scikit-image)")
    parser.add_argument("--out", type=Path, default=photos.photos_dir(), help="output folder")
    args = parser.parse_args(argv)
    read = _reader(args.source)
    args.out.mkdir(parents=True, exist_ok=True)
    total = 0
    for e in photos.CATALOGUE:
        data = read(e.source_file)
        digest = hashlib.sha256(data).hexdigest()
        if digest != e.source_sha256:
            sys.exit(f"error: {e.source_file} has SHA-256 {digest}, not scikit-image 0.26.0's {e.source_sha256}; "
                     "use that version's files")
        jpeg = _resized_jpeg(data)
        (args.out / f"{e.name}.jpg").write_bytes(jpeg)
        total += len(jpeg)
        print(f"{e.name}.jpg  {len(jpeg) / 1024:5.1f} KB  ({e.licence})")
    (args.out / "LICENSES.md").write_text(licences_markdown())
    print(f"{len(photos.CATALOGUE)} photos, {total / 1024:.1f} KB, and LICENSES.md in {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
