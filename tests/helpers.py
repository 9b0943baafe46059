"""Builders for test input files (real files on disk, no fakes)."""

from __future__ import annotations

from pathlib import Path

from rag.llm_process import free_port  # noqa: F401  (one implementation; tests import it from here)


def make_pdf(path: Path, title: str, lines: list[str]) -> Path:
    """A minimal valid PDF with one page of text and a /Title (written by hand, no extra dependency)."""
    text_ops = ["BT", "/F1 11 Tf", "50 780 Td", "14 TL"]
    for line in lines:
        safe = line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
        text_ops.append(f"({safe}) Tj T*")
    text_ops.append("ET")
    stream = "\n".join(text_ops).encode("latin-1")
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length " + str(len(stream)).encode() + b" >>\nstream\n" + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
        b"<< /Title (" + title.encode("latin-1") + b") /CreationDate (D:20240305120000) >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for i, obj in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{i} 0 obj\n".encode() + obj + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    for off in offsets:
        out += f"{off:010d} 00000 n \n".encode()
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R /Info 6 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    path.write_bytes(bytes(out))
    return path


NEWS_HTML = """<!DOCTYPE html><html lang="en"><head>
<title>Harbour reopens after storm | Coastal Times</title>
<meta property="og:title" content="Harbour reopens after storm">
<meta property="og:site_name" content="Coastal Times">
<meta name="author" content="Jane Reporter">
<meta property="article:published_time" content="2023-03-14T09:30:00Z">
<link rel="canonical" href="https://coastal.example/harbour-reopens">
</head><body>
<nav><a href="/">Home</a> <a href="/world">World</a> Share Tweet</nav>
<article><h1>Harbour reopens after storm</h1>
<p>The harbour of Port Elen reopened on Tuesday after a storm had closed it for five days, the port authority said.</p>
<p>Ferries to the mainland resumed at noon, and the first cargo ship unloaded 300 containers of food and fuel.</p>
<p>Harbour master Ewan Ross said repairs to the northern pier would cost about 2 million pounds and take until June.</p>
</article>
<footer>Subscribe to our newsletter. We use cookies. © Coastal Times</footer>
</body></html>"""




def wait_http(url: str, seconds: float = 120) -> None:
    """Wait until url answers 200, or fail naming it."""
    import time

    import httpx

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{url} did not come up within {seconds:.0f}s")
