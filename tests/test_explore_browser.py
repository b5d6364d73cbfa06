"""The explorer page in a real browser (Debian's chromium, driven by Playwright) against `charlm explore`
serving two short real runs: each section does what a person would do with it, with no console errors.

A screenshot of each section is written to test-output/explore/<section>.png for a person to look at.
"""

import json
import os
import random
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from helpers import CHARLM, charlm_env
from playwright.sync_api import expect, sync_playwright

pytestmark = pytest.mark.slow  # real charlm processes and a browser

CHROMIUM = os.environ.get("CHARLM_CHROMIUM") or shutil.which("chromium")
SCREENSHOTS = Path(__file__).resolve().parents[1] / "test-output" / "explore"
# Different in length from the page's default text, so a view of it is told apart from a view of that.
TEXT = 'He said, "the cat sat on a mat".\nThe dog ran to the big red house.\n'
QUOTES = '"[^"]*"'
# Answers of a small model on two CPU cores can take a moment; far below this when all is well.
expect.set_options(timeout=20_000)


def corpus_text() -> str:
    """Short generated sentences, each ending with a few words in quotes (for the pattern search)."""
    rng = random.Random(0)
    words = "the cat sat on a mat and said dog ran to big red house".split()
    lines = []
    for _ in range(300):
        sentence = " ".join(rng.choice(words) for _ in range(6)).capitalize()
        quoted = " ".join(rng.choice(words) for _ in range(2))
        lines.append(f'{sentence}, "{quoted}".')
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two real runs of a few seconds: an LSTM of 32 units and a 2-layer GRU of 24, each evaluated three times."""
    root = tmp_path_factory.mktemp("explore-browser")
    corpus = root / "corpus.txt"
    corpus.write_text(corpus_text(), encoding="utf-8")
    env = charlm_env(threads=None, CHARLM_CACHE_DIR=str(root / "cache"))
    made = []
    for name, options in (("lstm", ["--cell", "lstm", "--hidden", "32", "--layers", "1"]),
                          ("gru", ["--cell", "gru", "--hidden", "24", "--layers", "2"])):
        out = root / name
        done = subprocess.run([*CHARLM, "train", str(corpus), "--out", str(out), *options, "--steps", "60",
                               "--eval-every", "20", "--batch", "16", "--seed", "1", "-q"],
                              capture_output=True, text=True, env=env, timeout=300)
        if done.returncode != 0:
            pytest.fail(f"charlm train {name} failed ({done.returncode}):\n{done.stderr}")
        made.append(out)
    return corpus, made


@pytest.fixture(scope="module")
def explorer_url(runs, tmp_path_factory):
    """The URL of `charlm explore LSTM GRU` running as a real process (stopped at the end of the module)."""
    env = charlm_env(threads=None, CHARLM_CACHE_DIR=str(tmp_path_factory.mktemp("explore-cache")))
    server = subprocess.Popen([*CHARLM, "explore", *map(str, runs[1]), "--port", "0", "--json", "-q"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        first_line = server.stdout.readline()
        if not first_line:
            server.wait(timeout=10)
            pytest.fail(f"charlm explore exited ({server.returncode}) before serving:\n{server.stderr.read()}")
        yield json.loads(first_line)["url"]
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        server.stdout.close()
        server.stderr.close()


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM:
        pytest.fail("no chromium found for the explorer's browser tests: `make test` installs Debian's chromium "
                    "(apt-get install chromium), or set CHARLM_CHROMIUM to a Chromium executable")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM)
        yield launched
        launched.close()


@dataclass
class Console:
    """What the page reported as errors: console.error lines and uncaught exceptions."""

    errors: list[str] = field(default_factory=list)
    # A test that makes the server refuse a request sets this: Chromium logs each 4xx response as an error.
    http_errors_expected: bool = False

    def unexpected(self) -> list[str]:
        return [e for e in self.errors
                if not (self.http_errors_expected and e.startswith("Failed to load resource"))]


@pytest.fixture
def console():
    return Console()


@pytest.fixture
def page(browser, explorer_url, console):
    """The explorer page, loaded, in a fresh context with clipboard access; fails if the page logs an error."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=explorer_url.rstrip("/"))
    opened = context.new_page()
    opened.on("console", lambda message: message.type == "error"
              and console.errors.append(f"{message.text} ({message.location.get('url')})"))
    opened.on("pageerror", lambda error: console.errors.append(f"uncaught: {error}"))
    opened.goto(explorer_url)
    expect(opened.locator("#run option")).to_have_count(2)
    yield opened
    context.close()
    assert console.unexpected() == [], "the page reported errors"


def open_section(page, name: str) -> None:
    page.click(f"#tab-{name}")
    expect(page.locator(f"#section-{name}")).to_be_visible()


def screenshot(page, section: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{section}.png"), full_page=True)


def rgb(css: str) -> tuple[int, ...]:
    return tuple(int(v) for v in re.findall(r"\d+", css)[:3])


def token_spans(page, view: str) -> list[dict]:
    return page.eval_on_selector_all(f"#{view} span.tok", """spans => spans.map(s => ({
        text: s.textContent, bits: s.dataset.bits, value: s.dataset.value,
        background: getComputedStyle(s).backgroundColor}))""")


def wait_for_view_text(page, view: str, text: str) -> None:
    """Until the view shows `text` (an earlier text's view may still be on screen for a moment)."""
    page.wait_for_function("([id, text]) => [...document.querySelectorAll(`#${id} span.tok`)]"
                           ".map(s => s.textContent).join('') === text", arg=[view, text])


def test_samples_stream_in_side_by_side_and_give_their_command(page):
    page.fill("#prime", "The ")
    page.fill("#length", "150")
    page.fill("#num-samples", "2")
    page.fill("#seed", "7")
    page.click("#sample-button")
    expect(page.locator("#copy-command")).to_be_enabled()

    texts = page.locator("#samples div.sample").all_text_contents()
    assert len(texts) == 2
    for text in texts:
        assert text.startswith("The ") and len(text) > len("The ")
    command = page.locator("#sample-command").text_content()
    assert command.startswith("charlm sample ") and "--seed 7" in command and "-n 2" in command
    assert "lstm" in command  # the first run is the one sampled
    expect(page.locator("#sample-error")).to_be_hidden()

    page.click("#copy-command")
    expect(page.locator("#copy-command")).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == command
    screenshot(page, "sample")


def test_surprisal_colours_every_character_and_hover_shows_top_guesses(page):
    open_section(page, "surprisal")
    page.fill("#surprisal-text", TEXT)
    page.click("#surprisal-button")
    expect(page.locator("#surprisal-view span.tok")).to_have_count(len(TEXT))  # a char model: one per character

    spans = token_spans(page, "surprisal-view")
    assert "".join(s["text"] for s in spans) == TEXT
    bits = [float(s["bits"]) for s in spans]
    assert all(0 <= b < 64 for b in bits)
    colours = [rgb(s["background"]) for s in spans]
    assert all(len(c) == 3 for c in colours) and len(set(colours)) > 3
    # the scale runs white -> deep red, its green channel falling: the most surprising token is the darkest
    most, least = bits.index(max(bits)), bits.index(min(bits))
    assert colours[most][1] < colours[least][1]

    page.locator("#surprisal-view span.tok").nth(4).hover()
    tooltip = page.locator("#tooltip")
    expect(tooltip).to_be_visible()
    expect(tooltip.locator(".guess")).to_have_count(5)
    expect(tooltip).to_contain_text(f"{bits[4]:.2f} bits")
    assert all(row.strip() for row in tooltip.locator(".guess-text").all_text_contents())

    whole = page.locator("#surprisal-summary .whole").text_content()
    assert float(re.search(r"([\d.]+) bits/char", whole).group(1)) == pytest.approx(sum(bits) / len(TEXT), abs=2e-3)
    # select the first 10 characters: the summary adds their bits per character
    page.evaluate("""() => {
        const spans = document.querySelectorAll('#surprisal-view span.tok');
        const range = document.createRange();
        range.setStart(spans[0].firstChild, 0);
        range.setEnd(spans[9].firstChild, 1);
        getSelection().removeAllRanges();
        getSelection().addRange(range);
    }""")
    selection = page.locator("#surprisal-summary .selection")
    expect(selection).to_contain_text("10 characters")
    shown = float(re.search(r"([\d.]+) bits/char", selection.text_content()).group(1))
    assert shown == pytest.approx(sum(bits[:10]) / 10, abs=2e-3)
    screenshot(page, "surprisal")


def test_validation_text_fills_the_textarea_and_is_coloured(page, runs):
    corpus, _ = runs
    open_section(page, "surprisal")
    default = page.locator("#surprisal-text").input_value()
    page.click("#use-validation")
    expect(page.locator("#surprisal-text")).not_to_have_value(default)
    held_out = page.locator("#surprisal-text").input_value()
    assert held_out and held_out in corpus.read_text(encoding="utf-8")
    expect(page.locator("#surprisal-view span.tok")).to_have_count(len(held_out))


def test_choosing_another_unit_recolours_the_text(page):
    open_section(page, "units")
    page.fill("#units-text", TEXT)
    wait_for_view_text(page, "units-view", TEXT)
    expect(page.locator("#kind option")).to_have_count(2)  # an LSTM: outputs and memory cells
    before = token_spans(page, "units-view")
    assert all(-1 <= float(s["value"]) <= 1 for s in before)  # outputs a<t> are tanh-bounded

    page.click("#unit-next")
    expect(page.locator("#unit")).to_have_value("1")
    page.wait_for_function("""before => [...document.querySelectorAll('#units-view span.tok')]
        .map(s => s.dataset.value).join() !== before""", arg=",".join(s["value"] for s in before))
    after = token_spans(page, "units-view")
    assert [s["text"] for s in after] == [s["text"] for s in before]
    assert {s["background"] for s in after} != {s["background"] for s in before}

    page.select_option("#kind", "c")
    page.wait_for_function("""before => [...document.querySelectorAll('#units-view span.tok')]
        .map(s => s.dataset.value).join() !== before""", arg=",".join(s["value"] for s in after))
    cells = [float(s["value"]) for s in token_spans(page, "units-view")]
    assert len(cells) == len(TEXT)


def test_pattern_search_finds_units_and_clicking_one_shows_it(page, runs):
    corpus, _ = runs
    text = "".join(corpus.read_text(encoding="utf-8").splitlines(keepends=True)[:20])
    open_section(page, "units")
    page.fill("#units-text", text)
    page.fill("#pattern", QUOTES)
    page.click("#find-units-button")
    found = page.locator("#found-units button.found-unit")
    expect(found.first).to_be_visible()
    assert 1 <= found.count() <= 10
    expect(page.locator("#found-summary")).to_contain_text("characters")
    assert re.search(r"score \d\.\d\d", found.first.text_content()) and "AUC" in found.first.text_content()

    current = page.locator("#unit").input_value()
    choice = next(b for b in found.all() if b.get_attribute("data-unit") != current)
    unit, layer = choice.get_attribute("data-unit"), choice.get_attribute("data-layer")
    choice.click()
    expect(page.locator("#unit")).to_have_value(unit)
    expect(page.locator("#layer")).to_have_value(layer)
    expect(choice).to_have_class(re.compile(r"\bactive\b"))  # marked once its colours are shown
    wait_for_view_text(page, "units-view", text)
    page.locator("#units-view span.tok").nth(1).hover()
    expect(page.locator("#tooltip")).to_contain_text("activation")
    screenshot(page, "units")


def test_curves_draw_each_runs_validation_and_training_loss(page):
    open_section(page, "curves")
    val = page.locator("#curves-svg path.val-curve")
    expect(val).to_have_count(2)
    expect(page.locator("#curves-svg path.train-curve")).to_have_count(2)
    expect(page.locator("#curves-svg circle.best-point")).to_have_count(2)
    by_step = [val.nth(i).get_attribute("d") for i in range(2)]
    assert all(d.startswith("M") and d.count("L") >= 2 for d in by_step)  # three evaluations each
    assert val.nth(0).get_attribute("stroke") != val.nth(1).get_attribute("stroke")
    expect(page.locator("#curves-svg .legend")).to_contain_text("lstm")
    expect(page.locator("#curves-svg .legend")).to_contain_text("gru")
    screenshot(page, "curves")

    page.select_option("#x-axis", "time")
    expect(page.locator("#curves-svg .axis-title").first).to_have_text("training time")
    assert [val.nth(i).get_attribute("d") for i in range(2)] != by_step


def test_model_section_shows_the_selected_runs_configuration(page):
    open_section(page, "model")
    hidden = page.locator("#model-info tr", has_text="hidden units per layer").locator("td")
    expect(hidden).to_have_text("32")
    expect(page.locator("#model-info tr", has_text="cell").first.locator("td")).to_have_text("lstm")
    expect(page.locator("#model-info")).to_contain_text("best validation loss")
    screenshot(page, "model")

    page.select_option("#run", "1")  # the GRU: every section now asks about it
    expect(hidden).to_have_text("24")
    expect(page.locator("#kind option")).to_have_count(1)  # a GRU has no memory cells
    expect(page.locator("#layer option")).to_have_count(2)


def test_refused_requests_show_the_servers_message(page, console):
    console.http_errors_expected = True
    page.fill("#length", "5000")
    page.click("#sample-button")
    expect(page.locator("#sample-error")).to_contain_text("length must lie in [1, 2000]")

    open_section(page, "units")
    page.fill("#pattern", "(")
    page.click("#find-units-button")
    expect(page.locator("#units-error")).to_contain_text("not a regular expression")
    expect(page.locator("#found-units button.found-unit")).to_have_count(0)
