"""The README's two screenshots from real runs: the `semcollab serve` page and a `semcollab report` page.

    python scripts/docs_screenshots.py RUN [RUN ...] [--user ID] [--out docs/images]

Starts `semcollab serve RUN ...` on a free loopback port, opens `/` in headless Chromium (Debian's
/usr/bin/chromium or $SEMCOLLAB_CHROMIUM, driven by Playwright), asks for the recommendations of one user and
saves `serve.png`; then writes `semcollab report RUN ...` to a temporary file and saves `report.png`. The server
is stopped whatever happens. The tests check the same pages on toy runs (tests/serve/test_browser.py,
tests/test_report_html.py)."""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

CHROMIUM = os.environ.get("SEMCOLLAB_CHROMIUM", "/usr/bin/chromium")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--user", default=None, help="user id to show (default: the first user the server lists)")
    ap.add_argument("--out", type=Path, default=Path("docs/images"))
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    args.out.mkdir(parents=True, exist_ok=True)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([sys.executable, "-m", "semcollab", "serve", *args.runs, "--port", str(port),
                               "--log-level", "warning"], start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while True:
            if server.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("semcollab serve did not start")
            try:
                if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        user = args.user or httpx.get(base + "/v1/users", params={"q": ""}, timeout=10).json()["users"][0]
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1100, "height": 760}, bypass_csp=True)
            page.goto(base + "/")
            page.wait_for_function("document.querySelectorAll('#model option').length > 0")
            page.fill("#user", str(user))
            page.click("#go")
            page.wait_for_selector("#recs li")
            page.screenshot(path=str(args.out / "serve.png"), full_page=True)
            with tempfile.TemporaryDirectory() as tmp:
                report = Path(tmp) / "report.html"
                subprocess.run([sys.executable, "-m", "semcollab", "report", *args.runs, "--out", str(report)],
                               check=True)
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                page.goto(report.as_uri())
                page.wait_for_load_state("load")
                page.screenshot(path=str(args.out / "report.png"), full_page=True)
            browser.close()
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(30)
    print(f"wrote {args.out / 'serve.png'} and {args.out / 'report.png'} (user {user})")


if __name__ == "__main__":
    main()
