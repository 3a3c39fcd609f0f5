"""The playground page end to end in headless Chromium (Debian's ``chromium`` package).

Skipped, with the reason, when /usr/bin/chromium is absent (CI installs it with
``apt-get install -y chromium chromium-driver``). The first test lets the page run a shared link
and dumps the DOM; the second drives it like a person through chromedriver (selenium).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import urllib.parse
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from qrerank.rerank.reranker import Reranker
from tests.service.helpers import DOCS, live_server

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(),
    reason=f"{CHROMIUM} not installed (apt-get install -y chromium chromium-driver)",
)


@pytest.fixture(scope="module")
def server_url(reranker: Reranker, index_dir: Path) -> Iterator[str]:
    from qrerank.service import Settings, create_app

    with live_server(create_app(Settings(index=str(index_dir)), reranker)) as url:
        yield url


class _Tables(HTMLParser):
    """Rows of the #cosine and #fidelity tables, and the body's data-state."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: dict[str, list[list[str]]] = {"cosine": [], "fidelity": []}
        self.state = ""
        self._table: str | None = None
        self._cell: list[str] | None = None
        self._in_tbody = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "body":
            self.state = a.get("data-state") or ""
        elif tag == "table" and a.get("id") in self.rows:
            self._table = a["id"]
        elif tag == "tbody":
            self._in_tbody = True
        elif tag == "tr" and self._table and self._in_tbody:
            self.rows[self._table].append([])
        elif tag == "td" and self._table and self._in_tbody:
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self._cell is not None and self._table:
            self.rows[self._table][-1].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tbody":
            self._in_tbody = False
        elif tag == "table":
            self._table = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def test_shared_link_ranks_in_headless_chromium(server_url: str, reranker: Reranker, tmp_path: Path) -> None:
    query = "quantum qubit states"
    params = [("q", query), *[("doc", d) for d in DOCS], ("run", "1")]
    url = f"{server_url}/?{urllib.parse.urlencode(params)}"
    cmd = [CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=15000"]
    proc = subprocess.run([*cmd, "--dump-dom", url], capture_output=True, text=True, timeout=90)
    assert proc.returncode == 0, proc.stderr[-2000:]
    page = _Tables()
    page.feed(proc.stdout)
    assert page.state == "done", proc.stdout[-3000:]
    by_cos = reranker.rank(query, DOCS, method="cosine")
    by_fid = reranker.rank(query, DOCS, method="fidelity")
    assert len(page.rows["cosine"]) == len(page.rows["fidelity"]) == len(DOCS)
    assert [r[3] for r in page.rows["cosine"]] == [DOCS[h.index] for h in by_cos]
    assert [r[3] for r in page.rows["fidelity"]] == [DOCS[h.index] for h in by_fid]
    assert float(page.rows["cosine"][0][1]) == pytest.approx(by_cos[0].cosine, abs=1e-4)
    assert float(page.rows["fidelity"][0][1]) == pytest.approx(by_fid[0].quantum, abs=1e-3)
    assert re.fullmatch(r"=|↑\d+|↓\d+", page.rows["fidelity"][0][2])


def test_person_types_pastes_and_searches_the_index(
    server_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not Path(CHROMEDRIVER).exists() or shutil.which(CHROMEDRIVER) is None:
        pytest.skip(f"{CHROMEDRIVER} not installed (apt-get install -y chromium-driver)")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    monkeypatch.setenv("SE_OFFLINE", "true")  # never let Selenium Manager look for downloads
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in [*FLAGS, f"--user-data-dir={tmp_path / 'profile'}"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=CHROMEDRIVER))
    try:
        driver.set_page_load_timeout(30)
        driver.get(server_url + "/")
        wait = WebDriverWait(driver, 30)
        wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-state") == "ready")
        assert "hashing-256" in driver.find_element(By.ID, "model").text

        # An empty query is refused on the page, without a request.
        driver.find_element(By.ID, "run").click()
        assert "query" in driver.find_element(By.ID, "status").text.lower()

        driver.find_element(By.ID, "query").send_keys("bread yeast rises")
        driver.find_element(By.ID, "docs").send_keys("\n".join(DOCS))
        driver.find_element(By.ID, "run").click()
        wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-state") == "done")
        cos_rows = driver.find_elements(By.CSS_SELECTOR, "#cosine tbody tr")
        fid_rows = driver.find_elements(By.CSS_SELECTOR, "#fidelity tbody tr")
        assert len(cos_rows) == len(fid_rows) == len(DOCS)
        assert "yeast" in cos_rows[0].text and "yeast" in fid_rows[0].text
        assert "ranked 5 documents" in driver.find_element(By.ID, "status").text

        # Switch to the loaded index and search it.
        driver.find_element(By.ID, "mode-index").click()
        assert not driver.find_element(By.ID, "docs").is_displayed()
        k = driver.find_element(By.ID, "k")
        k.clear()
        k.send_keys("8")
        query = driver.find_element(By.ID, "query")
        query.clear()
        query.send_keys("bloch sphere qubit")
        driver.execute_script("document.body.dataset.state = 'ready'")
        driver.find_element(By.ID, "run").click()
        wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-state") == "done")
        fid_rows = driver.find_elements(By.CSS_SELECTOR, "#fidelity tbody tr")
        assert len(fid_rows) == 8
        assert "Bloch" in fid_rows[0].text or "Qubit" in fid_rows[0].text
    finally:
        driver.quit()
