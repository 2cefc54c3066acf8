"""The page in a real headless Chromium (Debian's chromium + chromium-driver): upload, drag a box, link, look."""

from __future__ import annotations

import base64
import shutil
from pathlib import Path

import pytest

CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not (CHROMIUM and DRIVER),
                       reason="needs Debian's chromium and chromium-driver: scripts/setup.sh installs them where "
                              "apt-get runs as root, else `sudo apt-get install chromium chromium-driver`"),
]
selenium = pytest.importorskip("selenium", reason="needs selenium (pip install -e '.[dev]')")

CAPTION = "Barack Obama and Joe Biden"
LEFT, RIGHT = (0, 0, 250, 301), (256, 0, 512, 301)  # Obama, Biden on two_people.jpg (people/photos.jsonl)
PICTURE_WIDTH = 512


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    # --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start. The networking switches keep
    # Chromium from calling its own services, which a machine without the internet refuses or lets time out.
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1400,1500", "--force-device-scale-factor=1", "--no-first-run",
                     "--disable-background-networking", "--disable-component-update", "--disable-sync"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    yield driver
    driver.quit()


def drag_box(browser, box: tuple[int, int, int, int]) -> None:
    """Drag with the mouse from the box's top-left corner to its bottom-right, and check the box the page read."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    canvas = browser.find_element(By.ID, "canvas")
    shown = canvas.rect
    k = shown["width"] / PICTURE_WIDTH
    x0, y0, x1, y1 = (round(v * k) for v in box)
    # Stay a pixel or two inside the canvas: an event on its very edge lands outside it.
    x0, y0 = max(x0, 2), max(y0, 2)
    x1, y1 = min(x1, round(shown["width"]) - 2), min(y1, round(shown["height"]) - 2)
    cx, cy = shown["width"] / 2, shown["height"] / 2  # Selenium's offsets count from the element's centre
    half_x, half_y = (x1 - x0) // 2, (y1 - y0) // 2
    (ActionChains(browser).move_to_element_with_offset(canvas, x0 - cx, y0 - cy).click_and_hold()
     .move_by_offset(half_x, half_y).move_by_offset(x1 - x0 - half_x, y1 - y0 - half_y).release().perform())
    drawn = [float(v) for v in browser.find_element(By.ID, "box").get_attribute("value").split(",")]
    assert all(abs(a - b) <= 6 for a, b in zip(drawn, box)), drawn  # the box is in the picture's own pixels


def link_and_wait(browser) -> None:
    """Press Link and wait for the answer or an error."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.find_element(By.ID, "go").click()
    WebDriverWait(browser, 180).until(lambda d: d.find_element(By.ID, "result").is_displayed()
                                      or d.find_element(By.ID, "error").is_displayed())


def link_box(browser, box: tuple[int, int, int, int]) -> list[str]:
    """Draw ``box``, type the caption, press Link: the ids of the top five (the page must show no error)."""
    from selenium.webdriver.common.by import By

    drag_box(browser, box)
    browser.find_element(By.ID, "text").send_keys(CAPTION)
    link_and_wait(browser)
    assert not browser.find_element(By.ID, "error").is_displayed(), browser.find_element(By.ID, "error").text
    return [row.get_attribute("data-id") for row in browser.find_elements(By.CSS_SELECTOR, "#ranking tbody tr")[:5]]


def pick_two_people(browser, served: str):
    """Open the page and pick two_people.jpg under the image root; returns a 30 s wait."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    wait = WebDriverWait(browser, 30)
    browser.get(served + "/")
    # The picker is filled once the page's listing of the image root has answered.
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, '#picker option[value="two_people.jpg"]'))
    Select(browser.find_element(By.ID, "picker")).select_by_value("two_people.jpg")
    wait.until(lambda d: d.find_element(By.ID, "go").is_enabled() and d.find_element(By.ID, "everyone").is_enabled())
    return wait


def test_draw_a_box_and_link(browser, served: str, people_dir: Path, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, 30)
    browser.get(served + "/")
    wait.until(lambda d: "entities" in d.find_element(By.ID, "health").text)
    browser.find_element(By.ID, "file").send_keys(str(people_dir / "images" / "two_people.jpg"))
    wait.until(lambda d: d.find_element(By.ID, "go").is_enabled())

    assert "Q6279" in link_box(browser, RIGHT)
    answer = browser.find_element(By.ID, "answer")
    assert "(Q6279), confidence 0." in answer.text and answer.get_attribute("class") == "found"  # how sure, shown
    steps = browser.find_elements(By.CSS_SELECTOR, "#steps li")
    assert [s.get_attribute("data-node") for s in steps] == ["prepare", "describe", "retrieve", "rerank", "decide"]
    assert all("done" in s.get_attribute("class") for s in steps)
    # No model server: the graph routes around describe, and the page says so.
    assert "skipped" in steps[1].get_attribute("class") and "skipped" in steps[1].text
    evidence = browser.find_element(By.ID, "evidence").text
    assert "faces" in evidence and "marked" in evidence
    # The picture the page shows now has the faces drawn over it: some pixels are the face colour.
    faced = browser.execute_script(
        "const c = document.getElementById('canvas');"
        "const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; let n = 0;"
        "for (let i = 0; i < d.length; i += 4) if (d[i] < 30 && d[i+1] > 160 && d[i+2] > 200) n++; return n;")
    assert faced > 50

    # The whole page, beyond the window, so every section can be looked at.
    height = browser.execute_script("return document.documentElement.scrollHeight")
    png = browser.execute_cdp_cmd("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True,
                                  "clip": {"x": 0, "y": 0, "width": 1400, "height": height, "scale": 1}})["data"]
    shot = tmp_path / "page.png"
    shot.write_bytes(base64.b64decode(png))
    assert shot.stat().st_size > 10_000
    print(f"screenshot: {shot}")


def test_pick_a_picture_link_the_other_box_then_a_bad_box(browser, served: str, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    pick_two_people(browser, served)
    assert "Q76" in link_box(browser, LEFT)

    field = browser.find_element(By.ID, "box")
    field.clear()
    field.send_keys("300,10,200,100", Keys.TAB)
    link_and_wait(browser)
    error = browser.find_element(By.ID, "error")
    assert error.is_displayed() and "inverted corners" in error.text and "Fix:" in error.text
    assert not browser.find_element(By.ID, "result").is_displayed()
    browser.save_screenshot(str(tmp_path / "error.png"))


def test_find_everyone_names_every_face_and_a_click_shows_its_ranking(browser, served: str, tmp_path: Path) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    wait = pick_two_people(browser, served)
    browser.find_element(By.ID, "text").send_keys(CAPTION)
    browser.find_element(By.ID, "everyone").click()
    WebDriverWait(browser, 180).until(lambda d: d.find_element(By.ID, "people-panel").is_displayed()
                                      or d.find_element(By.ID, "error").is_displayed())
    assert not browser.find_element(By.ID, "error").is_displayed(), browser.find_element(By.ID, "error").text
    names = [li.text for li in browser.find_elements(By.CSS_SELECTOR, "#people li")]
    assert len(names) == 2 and any("Barack Obama" in n for n in names) and any("Joe Biden" in n for n in names)
    # Every box is drawn in red with its name over the picture.
    red = browser.execute_script(
        "const c = document.getElementById('canvas');"
        "const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; let n = 0;"
        "for (let i = 0; i < d.length; i += 4) if (d[i] > 200 && d[i+1] < 30 && d[i+2] < 30) n++; return n;")
    assert red > 200
    # A click inside the right-hand face's box shows that person's ranking and evidence.
    boxes = [[float(v) for v in li.get_attribute("data-box").split(",")]
             for li in browser.find_elements(By.CSS_SELECTOR, "#people li")]
    x0, y0, x1, y1 = max(boxes, key=lambda box: box[0])
    canvas = browser.find_element(By.ID, "canvas")
    k = canvas.rect["width"] / PICTURE_WIDTH
    ActionChains(browser).move_to_element_with_offset(canvas, round((x0 + x1) / 2 * k - canvas.rect["width"] / 2),
                                                      round((y0 + y1) / 2 * k - canvas.rect["height"] / 2)
                                                      ).click().perform()
    wait.until(lambda d: "Joe Biden" in d.find_element(By.ID, "answer").text)
    assert browser.find_elements(By.CSS_SELECTOR, "#ranking tbody tr")[0].get_attribute("data-id") == "Q6279"
    assert "faces" in browser.find_element(By.ID, "evidence").text
    browser.save_screenshot(str(tmp_path / "everyone.png"))
