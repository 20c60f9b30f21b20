"""The dashboard and the delegator in a real headless Chromium (selenium).

Each test writes a screenshot under tests/artifacts/ for review.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import Select, WebDriverWait

from ..conftest import MakeBackend, StartLinker, admin_url, fs_config, router_url, write_disco
from .conftest import in_browser, screenshot

WAIT = 10.0


def css(driver: WebDriver | WebElement, selector: str) -> list[WebElement]:
    return driver.find_elements(By.CSS_SELECTOR, selector)


def wait_for(driver: WebDriver, selector: str) -> WebElement:
    WebDriverWait(driver, WAIT).until(lambda d: css(d, selector))
    return css(driver, selector)[0]


#: What the dashboard shows, read in one script run: the page redraws every second, so
#: reading element by element could mix two polls (or touch a replaced element).
READ_DASHBOARD = """
const text = (root, sel) => { const e = root.querySelector(sel); return e ? e.textContent : null; };
return [...document.querySelectorAll("section.router")].map((r) => ({
  label: text(r, "h2"),
  rps: text(r, ".stat .v.rps"),
  requests: text(r, ".stat .v.requests"),
  servers: [...r.querySelectorAll("tr[data-server]")].map((t) => t.dataset.server),
  services: [...r.querySelectorAll("tr[data-service]")].map((t) => t.dataset.service),
  clients: Object.fromEntries([...r.querySelectorAll(".client")].map((c) => [c.dataset.client,
    [...c.querySelectorAll("tr[data-endpoint]")].map((t) => ({
      address: t.dataset.endpoint, state: t.dataset.state,
      requests: Number(t.querySelectorAll("td")[4].textContent)}))])),
}));
"""


def dashboard(driver: WebDriver) -> dict[str, Any]:
    """The routers the dashboard shows, by label."""
    return {r["label"]: r for r in driver.execute_script(READ_DASHBOARD)}


# --- the dashboard ------------------------------------------------------------------


async def test_dashboard_shows_routers_clients_and_endpoints_live(
    browser: WebDriver,
    backend: MakeBackend,
    start_linker: StartLinker,
    disco: Path,
    http: httpx.AsyncClient,
) -> None:
    a = await backend("a")
    b = await backend("b")
    write_disco(disco, "web", a, b)
    linker = await start_linker(fs_config(disco))
    for _ in range(4):
        assert (await http.get(router_url(linker), headers={"Host": "web"})).status_code == 200
    assert (await http.get(router_url(linker), headers={"Host": "nope"})).status_code == 502
    url = admin_url(linker)
    web = "/#/io.l5d.fs/web"

    def first_look() -> None:
        browser.get(url + "/")
        WebDriverWait(browser, WAIT).until(lambda d: dashboard(d).get("out"))
        out = dashboard(browser)["out"]
        assert out["requests"] == "5"
        assert out["servers"] == [f"127.0.0.1:{linker.ports()['out'][0]}"]
        assert out["services"] == ["/svc/nope", "/svc/web"]
        endpoints = out["clients"][web]
        assert {e["address"] for e in endpoints} == {f"127.0.0.1:{a.port}", f"127.0.0.1:{b.port}"}
        assert {e["state"] for e in endpoints} == {"available"}
        assert sum(e["requests"] for e in endpoints) == 4

    await in_browser(first_look)

    # more traffic: the page follows without a reload
    for _ in range(20):
        await http.get(router_url(linker), headers={"Host": "web"})

    def follows() -> None:
        def caught_up(d: WebDriver) -> bool:
            # a poll may land while the last request is in flight: wait for a later one
            out = dashboard(d)["out"]
            served = sum(e["requests"] for e in out["clients"][web])
            return bool(out["requests"] == "25" and served == 24)

        WebDriverWait(browser, WAIT).until(caught_up)
        # a rate was measured between two polls (req/s shows a number)
        WebDriverWait(browser, WAIT).until(lambda d: dashboard(d)["out"]["rps"] != "–")
        screenshot(browser, "dashboard")

    await in_browser(follows)


# --- the delegator ----------------------------------------------------------------------


TWO_ROUTERS = """
admin: {{ip: 127.0.0.1, port: 0}}
namers:
- kind: io.l5d.fs
  rootDir: {disco}
  pollIntervalMs: 20
routers:
- protocol: http
  label: out
  dtab: /svc => /#/io.l5d.fs;
  servers: [{{port: 0, ip: 127.0.0.1}}]
- protocol: http
  label: in
  dstPrefix: /in
  dtab: /in => /$/inet/127.1/9;
  servers: [{{port: 0, ip: 127.0.0.1}}]
"""

EDITED_DTAB = """/svc => /#/io.l5d.fs;
/svc/web => /#/io.l5d.fs/missing | /#/io.l5d.fs/web;
/svc/web => /$/fail;
"""


async def test_delegator_explains_a_path(
    browser: WebDriver,
    backend: MakeBackend,
    start_linker: StartLinker,
    disco: Path,
) -> None:
    web = await backend("web")
    write_disco(disco, "web", web)
    linker = await start_linker(TWO_ROUTERS.format(disco=disco))
    url = admin_url(linker)

    def explain() -> None:
        browser.get(url + "/delegator")
        wait_for(browser, "body[data-ready=true]")
        router = Select(browser.find_element(By.ID, "router"))
        assert [o.text for o in router.options] == ["out", "in"]
        dtab = browser.find_element(By.ID, "dtab")
        assert dtab.get_property("value") == "/svc=>/#/io.l5d.fs;\n"
        # picking a router loads its dtab
        router.select_by_value("in")
        assert dtab.get_property("value") == "/in=>/$/inet/127.1/9;\n"
        router.select_by_value("out")
        dtab.clear()
        dtab.send_keys(EDITED_DTAB)
        path = browser.find_element(By.ID, "path")
        path.clear()
        path.send_keys("/svc/web")
        browser.find_element(By.ID, "go").click()
        tree = wait_for(browser, "#tree")
        assert not browser.find_element(By.ID, "error").is_displayed()

        root = css(tree, ":scope > .node")[0]
        assert root.get_attribute("data-type") == "alt"
        assert root.get_attribute("data-path") == "/svc/web"
        branches = css(root, ":scope > .node")
        seen = [
            (
                n.get_attribute("data-type"),
                n.get_attribute("data-path"),
                n.get_attribute("data-dentry"),
            )
            for n in branches
        ]
        fs = "/#/io.l5d.fs"
        assert seen == [
            ("fail", "/$/fail", "/svc/web=>/$/fail"),
            ("neg", f"{fs}/missing", f"/svc/web=>{fs}/missing | {fs}/web"),
            ("leaf", f"{fs}/web", f"/svc/web=>{fs}/missing | {fs}/web"),
            ("leaf", f"{fs}/web", f"/svc=>{fs}"),
        ]
        # the dentry that caused each rewrite is shown next to it
        assert css(branches[1], ".dentry")[0].text == f"/svc/web => {fs}/missing | {fs}/web"
        # the bound endpoints of a leaf, and the first path that reaches them is marked
        leaf = branches[2]
        assert [li.text for li in css(leaf, "li[data-addr]")] == [f"127.0.0.1:{web.port}"]
        assert "primary" in (leaf.get_attribute("class") or "")
        assert "primary" not in (branches[3].get_attribute("class") or "")
        screenshot(browser, "delegator")

        # an error is shown in place, and the old tree goes
        dtab.clear()
        dtab.send_keys("/svc => ")
        browser.find_element(By.ID, "go").click()
        error = browser.find_element(By.ID, "error")
        WebDriverWait(browser, WAIT).until(lambda d: error.is_displayed())
        assert error.text.startswith("Invalid dtab: ")
        assert not css(browser, "#tree")
        screenshot(browser, "delegator-error")

    await in_browser(explain)


async def test_delegator_link_with_router_and_path(
    browser: WebDriver, start_linker: StartLinker, disco: Path
) -> None:
    linker = await start_linker(TWO_ROUTERS.format(disco=disco))
    url = admin_url(linker)

    def follow_link() -> None:
        browser.get(url + "/delegator?router=in&path=/in/x")
        tree = wait_for(browser, "#tree")
        root = css(tree, ":scope > .node")[0]
        assert root.get_attribute("data-type") == "delegate"
        assert root.get_attribute("data-path") == "/in/x"
        (leaf,) = css(root, ".node")
        assert leaf.get_attribute("data-type") == "leaf"
        assert leaf.get_attribute("data-path") == "/$/inet/127.1/9/x"
        assert [li.text for li in css(leaf, "li[data-addr]")] == ["127.0.0.1:9"]
        assert "residual" in css(leaf, ".bound-name")[0].text

    await in_browser(follow_link)


async def test_fs_config_page(browser: WebDriver, start_linker: StartLinker, disco: Path) -> None:
    linker = await start_linker(fs_config(disco))

    def files() -> None:
        browser.get(admin_url(linker) + "/files")
        link = wait_for(browser, "ul.files a")
        assert link.text == "config.yaml"
        link.click()
        WebDriverWait(browser, WAIT).until(lambda d: "io.l5d.fs" in d.page_source)
        assert "rootDir: " + str(disco) in browser.find_element(By.TAG_NAME, "body").text

    await in_browser(files)


async def test_delegator_draws_weighted_unions(
    browser: WebDriver, start_linker: StartLinker, disco: Path
) -> None:
    linker = await start_linker(TWO_ROUTERS.format(disco=disco))
    url = admin_url(linker)

    def union() -> None:
        browser.get(url + "/delegator")
        wait_for(browser, "body[data-ready=true]")
        dtab = browser.find_element(By.ID, "dtab")
        dtab.clear()
        dtab.send_keys("/svc => 3 * /$/inet/127.1/8001 & 1 * /$/inet/127.1/8002 & 1 * /x;")
        path = browser.find_element(By.ID, "path")
        path.clear()
        path.send_keys("/svc/web")
        browser.find_element(By.ID, "go").click()
        tree = wait_for(browser, "#tree")
        (union,) = css(tree, ":scope > .node")  # the root Delegate simplifies away
        assert union.get_attribute("data-type") == "union"
        branches = css(union, ":scope > .node")
        assert [css(b, ".weight")[0].text for b in branches] == ["3 ×", "1 ×", "1 ×"]
        assert [b.get_attribute("data-type") for b in branches] == ["leaf", "leaf", "neg"]
        assert [li.text for li in css(branches[1], "li[data-addr]")] == ["127.0.0.1:8002"]
        dentry = "/svc=>3.00*/$/inet/127.1/8001 & /$/inet/127.1/8002 & /x"  # Finagle's show
        assert {b.get_attribute("data-dentry") for b in branches} == {dentry}
        screenshot(browser, "delegator-union")

    await in_browser(union)
