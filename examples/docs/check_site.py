"""Check the built documentation site in a real browser, and take its screenshots.

Serves ``site/`` (``mkdocs build``) on a local port and opens every page in headless
Chromium: each page must load with no console error and every image on it must load;
the navigation must lead from the home page to the environment page, and the search must
find the environment page. Screenshots of the home, environment and verdict pages go to
``docs/screenshots/``. Exit status 1 with a list of the problems if any.

Needs Debian's Chromium and its driver, and selenium (the ``docs`` extra)::

    sudo apt-get install chromium chromium-driver
    pip install -e ".[docs]"
    mkdocs build && python examples/docs/check_site.py
"""

from __future__ import annotations

import functools
import http.server
import shutil
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from routing_env.experiments import parse_args

ROOT = Path(__file__).resolve().parents[2]
#: The pages screenshotted (site paths) and the file each goes to.
SCREENSHOTS = {"": "home.png", "environment/": "environment.png", "verdict/": "verdict.png"}
#: Chromium's flags for a machine without network access (no background connections).
FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,900",
)


@dataclass
class Args:
    """Open every page of the built site in headless Chromium; take the screenshots."""

    site_dir: str = "site"
    """the built site (mkdocs build)"""
    screenshots: str = "docs/screenshots"
    """folder of the screenshots (home, environment, verdict)"""
    chromium: str = "/usr/bin/chromium"
    """the Chromium binary"""
    chromedriver: str = "/usr/bin/chromedriver"
    """its WebDriver"""


def serve(folder: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:  # no line per request
        pass


def pages(site: Path) -> list[str]:
    """Every page of the site, as paths relative to its root ("" for the home page)."""
    out = []
    for index in sorted(site.rglob("index.html")):
        rel = index.parent.relative_to(site).as_posix()
        if rel.startswith(("assets", "search")):
            continue
        out.append("" if rel == "." else rel + "/")
    return out


def browser(args: Args, profile: str):  # -> selenium.webdriver.Chrome
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = args.chromium
    for flag in (*FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(args.chromedriver), options=options)


def check(args: Args) -> list[str]:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as wait_for
    from selenium.webdriver.support.ui import WebDriverWait

    site = Path(args.site_dir)
    if not (site / "index.html").is_file():
        raise FileNotFoundError(f"no built site in {site}: run mkdocs build first")
    server, base = serve(site)
    profile = tempfile.mkdtemp(prefix="chromium-")
    problems: list[str] = []
    driver = browser(args, profile)
    try:
        for page in pages(site):
            driver.get(base + page)
            WebDriverWait(driver, 20).until(
                lambda d: d.execute_script("return document.readyState") == "complete"
            )
            errors = [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]
            problems += [f"{page or '/'}: console error: {m}" for m in errors]
            broken = driver.execute_script(
                "return Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src)"
            )
            problems += [f"{page or '/'}: image did not load: {src}" for src in broken]
            if page in SCREENSHOTS:
                out = Path(args.screenshots)
                out.mkdir(parents=True, exist_ok=True)
                driver.save_screenshot(str(out / SCREENSHOTS[page]))
        # navigation: from home to the environment page by its link in the menu
        driver.get(base)
        link = WebDriverWait(driver, 20).until(
            wait_for.element_to_be_clickable((By.CSS_SELECTOR, "nav a[href$='environment/']"))
        )
        driver.execute_script("arguments[0].click()", link)
        WebDriverWait(driver, 20).until(lambda d: d.current_url.endswith("/environment/"))
        # search: the environment page is found by a word of its title
        driver.get(base)
        driver.execute_script("document.querySelector('label[for=__search]').click()")
        box = WebDriverWait(driver, 20).until(
            wait_for.element_to_be_clickable((By.CSS_SELECTOR, "input.md-search__input"))
        )
        box.send_keys("observation space")
        found = WebDriverWait(driver, 20).until(
            lambda d: d.find_elements(By.CSS_SELECTOR, ".md-search-result__link[href*='environment/']")
        )
        if not found:
            problems.append("search: 'observation space' does not find the environment page")
    finally:
        driver.quit()
        server.shutdown()
        shutil.rmtree(profile, ignore_errors=True)
    return problems


def main(args: Args) -> int:
    problems = check(args)
    for line in problems:
        print(line, file=sys.stderr)
    print(
        f"{len(pages(Path(args.site_dir)))} pages checked, {len(problems)} problem(s); screenshots in {args.screenshots}"
    )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(parse_args(Args)))
