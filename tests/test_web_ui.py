"""The web chat page in a real browser: Debian's Chromium driven by Playwright, against a real server.

A screenshot of each page is kept in ``test-artifacts/`` (or ``$CODI2_TEST_ARTIFACTS``).
"""

from __future__ import annotations

import io
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import PIL.Image
import pytest
from server_fixtures import running_server

from codi2_sdk import samples
from codi2_sdk.mini.probes import probe_picture
from codi2_sdk.mini.world import Picture

pytest.importorskip("gradio")
playwright = pytest.importorskip("playwright.sync_api")

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = Path(os.environ.get("CODI2_TEST_ARTIFACTS", ROOT / "test-artifacts"))
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (apt-get install chromium)")


@pytest.fixture(scope="module")
def mini():
    from codi2_sdk.backends.local import LocalBackend

    return LocalBackend.from_pretrained("codi2-mini")


@pytest.fixture(scope="module")
def browser():
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        yield browser
        browser.close()


def _entry(page):
    return page.locator("#codi2-entry textarea")


def _picture_in_chat(page, index: int) -> PIL.Image.Image:
    """The chat's ``index``-th picture, once the browser shows it, fetched as the browser did."""
    image = page.locator("#codi2-chat img").nth(index)
    image.wait_for(state="visible", timeout=180_000)
    page.wait_for_function("i => i.complete && i.naturalWidth > 0", arg=image.element_handle(), timeout=60_000)
    data = page.request.get(image.get_attribute("src")).body()
    return PIL.Image.open(io.BytesIO(data)).convert("RGB")


def test_a_prompt_on_the_page_shows_the_picture_and_undo_takes_it_back(mini, browser, tmp_path: Path) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with running_server(mini) as url:
        page = browser.new_page()
        page.goto(f"{url}/ui/")
        page.get_by_text("codi2 · codi2-mini").wait_for(timeout=60_000)  # the heading, filled from the model
        _entry(page).fill("draw a large red circle on the left.")
        _entry(page).press("Enter")
        assert probe_picture(_picture_in_chat(page, 0)) == Picture("circle", "red", "large", "left")
        page.screenshot(path=str(ARTIFACTS / "web-ui-chat.png"), full_page=True)

        _entry(page).fill("make it blue.")  # a second turn edits the model's own picture
        _entry(page).press("Enter")
        assert probe_picture(_picture_in_chat(page, 1)) == Picture("circle", "blue", "large", "left")

        page.get_by_role("button", name="Undo last turn").click()
        page.wait_for_function("document.querySelectorAll('#codi2-chat img').length === 1", timeout=30_000)

        # an example pair from files, then a new picture alone: the answer is a picture again
        for name, description in (
            ("before", "a small red circle on the left"),
            ("after", "a large red circle on the left"),
        ):
            samples.picture(description).save(tmp_path / f"{name}.png")
            page.locator(f"#codi2-{name} input[type=file]").set_input_files(str(tmp_path / f"{name}.png"))
        page.get_by_role("button", name="Add example").click()
        page.get_by_text("image → image").wait_for(timeout=30_000)
        samples.picture("a small blue square on the right").save(tmp_path / "query.png")
        page.locator("#codi2-entry input[type=file]").set_input_files(str(tmp_path / "query.png"))
        page.locator("#codi2-entry img").first.wait_for(timeout=30_000)  # the attached picture's thumbnail
        _entry(page).press("Enter")
        assert _picture_in_chat(page, 2).size == (64, 64)  # the answer: a picture (the query is the second)
        page.screenshot(path=str(ARTIFACTS / "web-ui-example.png"), full_page=True)
        page.close()


def test_a_new_chat_takes_the_old_ones_files_away(mini, browser, tmp_path: Path, monkeypatch) -> None:
    """A page served for months must not fill its disk: a session's media files go when its chat restarts (and
    when Gradio forgets the session, an hour after its tab closed)."""
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where this test's sessions keep their files
    with running_server(mini) as url:
        page = browser.new_page()
        page.goto(f"{url}/ui/")
        page.get_by_text("codi2 · codi2-mini").wait_for(timeout=60_000)
        assert list(tmp_path.glob("codi2-ui-*")) == []  # a visit alone writes nothing
        _entry(page).fill("draw a large red circle on the left.")
        _entry(page).press("Enter")
        _picture_in_chat(page, 0)
        folders = list(tmp_path.glob("codi2-ui-*"))
        assert len(folders) == 1 and [f.suffix for f in folders[0].iterdir()] == [".png"]
        page.get_by_role("button", name="New chat").click()
        page.wait_for_function("document.querySelectorAll('#codi2-chat img').length === 0", timeout=30_000)
        assert not folders[0].exists()
        page.close()


def test_with_an_api_key_the_page_asks_for_it(mini, browser) -> None:
    with running_server(mini, api_key="sesame") as url:
        page = browser.new_page()
        page.goto(f"{url}/ui/")
        page.get_by_text("API key").first.wait_for(timeout=60_000)
        assert page.locator("#codi2-entry").count() == 0  # no chat before the key
        page.get_by_label("username").fill("me")
        page.get_by_label("password").fill("wrong")
        page.get_by_role("button", name="Login").click()
        page.get_by_text("Incorrect").first.wait_for(timeout=30_000)
        page.get_by_label("username").fill("me")  # the form comes back empty
        page.get_by_label("password").fill("sesame")
        page.get_by_role("button", name="Login").click()
        _entry(page).wait_for(timeout=60_000)
        page.screenshot(path=str(ARTIFACTS / "web-ui-login.png"), full_page=True)
        page.close()


def test_codi2_ui_runs_alone_against_a_server(mini) -> None:
    with running_server(mini, ui=False) as url:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        sock.close()
        command = [sys.executable, "-m", "codi2_sdk.cli", "ui", "--url", url, "--port", str(port)]
        with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as ui:
            try:
                deadline = time.monotonic() + 120
                while True:
                    try:
                        page = httpx.get(f"http://127.0.0.1:{port}/", timeout=5)
                        break
                    except httpx.TransportError:
                        assert ui.poll() is None, ui.stdout.read() if ui.stdout else ""
                        assert time.monotonic() < deadline, "codi2 ui did not start"
                        time.sleep(0.5)
                assert page.status_code == 200 and "gradio" in page.text.lower()
                assert httpx.get(f"{url}/ui/", timeout=5).status_code == 404  # ui=False: the server has no page
            finally:
                ui.terminate()
