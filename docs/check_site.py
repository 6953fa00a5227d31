"""Checks the built book in a real browser (`make book-check`): headless Chromium through selenium.

    python docs/check_site.py build/book/html

It serves the folder on localhost and verifies that every page loads with a title (no 404) and its
<h1> (waited for up to 10 s, then the page is loaded once more: one clean-clone run on a busy machine
once read a page's title but not yet its heading; the line says when a second load was needed, and a
page still without one is reported with the headings its file holds), that
every notebook of notebooks/ has its page, that every image is decoded (naturalWidth > 0; notebook
02's learning curve among them), that tables render (a <table> with rows on the results pages),
that every link to the same host answers HTTP 200, and that equations are typeset (MathJax's
<mjx-container> on notebooks 01 and 02). Prints one line per check and exits 1 on any failure.
Needs /usr/bin/chromium and /usr/bin/chromedriver (Debian: apt-get install chromium chromium-driver).
"""
from __future__ import annotations

import argparse
import functools
import html.parser
import http.server
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--window-size=1280,1600"]  # without the networking flags it stalls on a closed network
TABLE_PAGES = {"results.html": 3, "ablations.html": 3, "tasks.html": 3}  # page: fewest table rows
MATH_PAGES = ("01_", "02_")
CURVE_CELL = "figures.learning_curve("  # the code that draws notebook 02's learning curve


def serve(folder: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    """Starts a quiet HTTP server over `folder` on a free localhost port; returns it and its URL."""
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

    class Server(http.server.ThreadingHTTPServer):
        def handle_error(self, request, client_address) -> None:
            if not isinstance(sys.exc_info()[1], ConnectionError):  # the browser left a page mid-load
                super().handle_error(request, client_address)

    server = Server(("127.0.0.1", 0), functools.partial(Quiet, directory=str(folder)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


def browser(chromium: str, driver: str, profile: str):
    """Returns a headless Chromium driven by selenium, with a fresh profile folder."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in CHROMIUM_FLAGS + [f"--user-data-dir={profile}"]:
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(executable_path=driver), options=options)


def status(url: str) -> int:
    """Returns the HTTP status of a GET of `url` (without its fragment)."""
    try:
        with urllib.request.urlopen(url.split("#")[0], timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as err:
        return err.code


def load(drv, url: str, *, wait: float = 10.0) -> int:
    """Opens `url` and waits until its body holds an <h1> (every page of the book has one), for at
    most `wait` seconds; when it does not come, loads the page once more. Returns the loads it took
    (1 or 2); the caller's checks then read whatever the page holds."""
    for attempt in (1, 2):
        drv.get(url)
        deadline = time.time() + wait
        while time.time() < deadline:
            if drv.execute_script("return document.readyState === 'complete' && !!document.querySelector('h1')"):
                return attempt
            time.sleep(0.2)
    return 2


def page_facts(drv, url: str, *, math_wait: float) -> dict:
    """Loads one page and returns what the checks read from it (`loads`: how many loads it took)."""
    loads = load(drv, url)
    deadline = time.time() + math_wait
    while math_wait and time.time() < deadline and not drv.find_elements("css selector", "mjx-container"):
        time.sleep(0.2)
    js = """return {
        title: document.title,
        h1: Array.from(document.querySelectorAll('h1')).map(h => h.textContent.trim()),
        images: Array.from(document.images).map(i => [i.getAttribute('src'), i.complete, i.naturalWidth]),
        tables: Array.from(document.querySelectorAll('table')).map(t => t.rows.length),
        math: document.querySelectorAll('mjx-container').length,
        curve: (() => {  // the output images of the cell that draws notebook 02's learning curve
            const cell = Array.from(document.querySelectorAll('div.cell')).find(
                c => (c.querySelector('.cell_input') || {textContent: ''}).textContent.includes(arguments[0]));
            return cell ? Array.from(cell.querySelectorAll('.cell_output img')).map(i => i.naturalWidth) : [];
        })(),
        ids: Array.from(document.querySelectorAll('[id]')).map(e => e.id),
        links: Array.from(document.querySelectorAll('a[href]')).map(a => a.href)};"""
    return {**drv.execute_script(js, CURVE_CELL), "loads": loads}


def static_h1(path: Path) -> list[str]:
    """Returns the text of the <h1> elements in the HTML file itself (what the browser should show)."""
    class H1(html.parser.HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.depth, self.found = 0, []

        def handle_starttag(self, tag, attrs) -> None:
            if tag == "h1":
                self.depth += 1
                self.found.append("")

        def handle_endtag(self, tag) -> None:
            if tag == "h1" and self.depth:
                self.depth -= 1

        def handle_data(self, data) -> None:
            if self.depth:
                self.found[-1] += data

    parser = H1()
    parser.feed(path.read_text(encoding="utf-8"))
    return [h.strip() for h in parser.found]


def check_book(folder: Path, *, chromium: str, driver: str) -> list[str]:
    """Runs every check over the book in `folder`; returns the failures (printing each check)."""
    failures: list[str] = []

    def check(ok: bool, what: str) -> None:
        print(f"{'ok  ' if ok else 'FAIL'} {what}", flush=True)
        if not ok:
            failures.append(what)

    pages = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.html")
                   if not p.relative_to(folder).as_posix().startswith(("_", "genindex", "search")))
    sources = sorted(p.stem for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    for stem in sources:
        check(f"notebooks/{stem}.html" in pages, f"notebook {stem} has a page in the book")
    server, base = serve(folder)
    links: set[str] = set()
    ids: dict[str, set[str]] = {}  # page path -> the ids an anchor (#id) can point at
    with tempfile.TemporaryDirectory(prefix="book-check-") as profile:
        drv = browser(chromium, driver, profile)
        try:
            for page in pages:
                is_math = page.startswith("notebooks/") and Path(page).name.startswith(MATH_PAGES)
                facts = page_facts(drv, base + page, math_wait=20.0 if is_math else 0.0)
                links.update(facts["links"])
                ids["/" + page] = set(facts["ids"])
                title, heading = facts["title"], facts["h1"]
                again = " (on a second load)" if facts["loads"] > 1 and heading else ""
                check(bool(title) and "404" not in title and "not found" not in title.lower() and bool(heading),
                      f"{page} loads: {title!r}{again}" + ("" if heading else
                      f"; no <h1> in the browser, the file has {static_h1(folder / page)}"))
                bad = [src for src, done, width in facts["images"] if not done or width == 0]
                check(not bad, f"{page}: {len(facts['images'])} images decoded" + (f", not {bad}" if bad else ""))
                if page.startswith("notebooks/02_"):
                    curve = facts["curve"]
                    check(bool(curve) and all(w > 0 for w in curve),
                          f"{page}: the learning curve is decoded (naturalWidth {curve})")
                if is_math:
                    check(facts["math"] > 0, f"{page}: {facts['math']} equations typeset by MathJax")
                if Path(page).name in TABLE_PAGES or page.startswith("notebooks/06_"):
                    rows = max(facts["tables"], default=0)
                    least = TABLE_PAGES.get(Path(page).name, 2)
                    check(rows >= least, f"{page}: {len(facts['tables'])} tables, the largest with {rows} rows")
        finally:
            drv.quit()
        host = urllib.parse.urlparse(base).netloc
        internal = sorted({l.split("#")[0] for l in links if urllib.parse.urlparse(l).netloc == host})
        broken = [l for l in internal if status(l) != 200]
        check(not broken, f"{len(internal)} internal links answer 200" + (f"; broken: {broken}" if broken else ""))
        anchored = {(urllib.parse.urlparse(l).path, urllib.parse.unquote(urllib.parse.urlparse(l).fragment))
                    for l in links if urllib.parse.urlparse(l).netloc == host and urllib.parse.urlparse(l).fragment}
        lost = sorted(f"{path}#{frag}" for path, frag in anchored
                      if frag not in ids.get("/index.html" if path == "/" else path, {frag}))
        check(not lost, f"{len(anchored)} links to a place in a page find it" + (f"; not found: {lost}" if lost else ""))
    server.shutdown()
    return failures


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("folder", nargs="?", default=str(ROOT / "build" / "book" / "html"), help="the built book")
    p.add_argument("--chromium", default="/usr/bin/chromium")
    p.add_argument("--driver", default="/usr/bin/chromedriver")
    args = p.parse_args(argv)
    folder = Path(args.folder)
    if not (folder / "index.html").is_file():
        p.exit(2, f"{folder}/index.html not found: build the book first (make book)\n")
    for tool in (args.chromium, args.driver):
        if not Path(tool).is_file():
            p.exit(2, f"{tool} not found: apt-get install -y chromium chromium-driver (or pass --chromium/--driver)\n")
    start = time.time()
    failures = check_book(folder, chromium=args.chromium, driver=args.driver)
    print(f"{'FAILED' if failures else 'passed'}: {len(failures)} failures, {time.time() - start:.0f} s")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
