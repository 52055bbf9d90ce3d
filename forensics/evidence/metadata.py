"""Metadata: EXIF camera/software tags, XMP packets, C2PA manifests (JUMBF 'c2pa' boxes) and generator markers.

Metadata is easy to strip and to forge, so nothing here proves anything: a C2PA manifest or an IPTC
``trainedAlgorithmicMedia`` source type is a *declaration* by whoever wrote the file, and missing metadata (the
norm after any upload) says nothing about authenticity. The result lists what is present, in the analyst's words.
"""

from __future__ import annotations

import re
import struct

from PIL import Image

from forensics.evidence import EvidenceResult, EvidenceSubject, register_evidence
from forensics_core.media.sniff import open_for_read

READ_LIMIT = 16 << 20  # metadata lives in the first megabytes; never read a whole video
EXIF_TAGS = {271: "Make", 272: "Model", 305: "Software", 306: "DateTime", 315: "Artist", 33432: "Copyright"}
EXIF_IFD_TAGS = {36867: "DateTimeOriginal", 42036: "LensModel"}
XMP_FIELDS = ("CreatorTool", "softwareAgent", "DigitalSourceType", "Credit", "History")
# Strings that tools write when they *generate* (not just edit) an image.
GENERATOR_MARKERS = (
    "trainedalgorithmicmedia", "compositewithtrainedalgorithmicmedia", "algorithmicmedia", "stable diffusion",
    "stablediffusion", "midjourney", "dall-e", "dall·e", "firefly", "novelai", "comfyui", "automatic1111",
    "imagen", "generative fill", "stylegan", "thispersondoesnotexist",
)  # fmt: skip
EDITOR_MARKERS = ("photoshop", "gimp", "lightroom", "affinity", "pixelmator", "snapseed", "facetune", "faceapp")


def _jpeg_app11_c2pa(data: bytes) -> bool:
    """Walk JPEG segments up to SOS: C2PA is carried in APP11 (0xFFEB) JUMBF boxes labelled 'c2pa'."""
    if not data.startswith(b"\xff\xd8"):
        return False
    i = 2
    while i + 4 <= len(data) and data[i] == 0xFF:
        marker = data[i + 1]
        if marker == 0xDA:  # start of scan: no more metadata segments
            break
        (length,) = struct.unpack(">H", data[i + 2 : i + 4])
        seg = data[i + 4 : i + 2 + length]
        if marker == 0xEB and seg[:2] == b"JP" and b"jumb" in seg and b"c2pa" in seg:
            return True
        i += 2 + length
    return False


def _png_chunks(data: bytes) -> list[bytes]:
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        return []
    out, i = [], 8
    while i + 8 <= len(data):
        (length,) = struct.unpack(">I", data[i : i + 4])
        out.append(data[i + 4 : i + 8])
        i += 12 + length
    return out


def _xmp(data: bytes) -> dict[str, str]:
    start = data.find(b"<x:xmpmeta")
    if start < 0:
        return {}
    end = data.find(b"</x:xmpmeta>", start)
    packet = data[start : end if end > 0 else start + 65536].decode("utf-8", "replace")
    found: dict[str, str] = {"_present": "yes"}
    for name in XMP_FIELDS:
        m = re.search(rf'[\w-]+:{name}\s*=\s*"([^"]{{0,200}})"', packet) or re.search(
            rf"<[\w-]+:{name}>([^<]{{0,200}})<", packet
        )
        if m:
            found[name] = m.group(1).strip()
    return found


def _exif(path: str) -> tuple[dict[str, str], dict[str, str]]:
    tags: dict[str, str] = {}
    text: dict[str, str] = {}
    try:
        with open_for_read(path) as fh, Image.open(fh) as im:
            exif = im.getexif()
            for k, name in EXIF_TAGS.items():
                if k in exif:
                    tags[name] = str(exif[k])[:200]
            ifd = exif.get_ifd(0x8769)
            for k, name in EXIF_IFD_TAGS.items():
                if k in ifd:
                    tags[name] = str(ifd[k])[:200]
            for k, v in (im.info or {}).items():  # PNG tEXt/iTXt chunks, e.g. Stable Diffusion 'parameters'
                if isinstance(v, str) and k.lower() not in ("xml:com.adobe.xmp", "icc_profile"):
                    text[str(k)[:40]] = v[:300]
    except Exception:  # metadata of a file PIL cannot open (videos) is simply absent
        pass
    return tags, text


@register_evidence(
    "metadata",
    scope="file",
    description="EXIF / XMP / C2PA presence and software tags.",
    strength="1 when the metadata names generative tooling, else none (metadata is easily stripped or forged: its "
    "absence says nothing)",
)
def metadata(subject: EvidenceSubject) -> EvidenceResult:
    with open_for_read(subject.path) as f:  # the path may have been swapped for a FIFO since it was decoded
        data = f.read(READ_LIMIT)
    exif, text = _exif(subject.path) if subject.media_type == "image" else ({}, {})
    xmp = _xmp(data)
    chunks = _png_chunks(data)
    c2pa = _jpeg_app11_c2pa(data) or b"caBX" in chunks or (b"jumb" in data and b"c2pa" in data)
    haystack = " ".join([*exif.values(), *xmp.values(), *text.keys(), *text.values()]).lower()
    generators = sorted({m for m in GENERATOR_MARKERS if m in haystack})
    editors = sorted({m for m in EDITOR_MARKERS if m in haystack})
    details = {
        "exif": exif,
        "xmp": {k: v for k, v in xmp.items() if not k.startswith("_")},
        "has_exif": bool(exif),
        "has_xmp": bool(xmp),
        "has_c2pa": bool(c2pa),
        "text_chunks": text,
        "generator_markers": generators,
        "editor_markers": editors,
        "container": subject.container,
    }
    notes = []
    if generators:
        notes.append(f"metadata declares generative tooling ({', '.join(generators)})")
    if c2pa:
        notes.append("a C2PA content-credentials manifest is present (verify its signature with a C2PA tool)")
    if editors:
        notes.append(f"editing software is named ({', '.join(editors)})")
    if exif.get("Make") or exif.get("Model"):
        notes.append(f"camera tags name {exif.get('Make', '')} {exif.get('Model', '')}".rstrip())
    if not (exif or xmp or c2pa or text):
        notes.append("no EXIF, XMP or C2PA metadata (common after upload or screenshot; not evidence either way)")
    text_ = "; ".join(notes)
    summary = text_[:1].upper() + text_[1:] + ". Metadata can be stripped or forged."
    score = 1.0 if generators else None
    return EvidenceResult("metadata", "file", score, summary, details)
