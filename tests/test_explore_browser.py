"""The explorer page in a real browser (Debian's chromium, driven by Playwright) against `charlm explore`
serving two short real language-model runs, and against one serving a tagger, a classifier and a language
model: each section does what a person would do with it, with no console errors.

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

import numpy as np
import pytest
from helpers import CHARLM, charlm_env
from playwright.sync_api import expect, sync_playwright
from task_runs import train_classifier, train_tagger
from test_explore_translate import train_translator

from charlm.explore.api import DEFAULT_PATTERN
from charlm.models.encoder import encoder_activations, encoder_forward, init_state
from charlm.store.checkpoint import load_checkpoint
from charlm.tasks.classify.classifier_inference import as_classifier, classify_texts
from charlm.tasks.tagging.tagged_text import make_doc
from charlm.tasks.tagging.tagger_inference import as_tagger, evaluate_docs, labelled_docs, predict_docs, tag_docs
from charlm.tasks.translate.translate_inference import as_translator, evaluate_pairs, translate_texts

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


def serve(paths, cache):
    """`charlm explore PATHS...` as a real process: yields its URL, stops it after."""
    env = charlm_env(threads=None, CHARLM_CACHE_DIR=str(cache))
    server = subprocess.Popen([*CHARLM, "explore", *map(str, paths), "--port", "0", "--json", "-q"],
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
def explorer_url(runs, tmp_path_factory):
    """The URL of `charlm explore LSTM GRU` running as a real process (stopped at the end of the module)."""
    yield from serve(runs[1], tmp_path_factory.mktemp("explore-cache"))


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


def open_page(browser, url, console, runs: int):
    """The explorer page at `url`, loaded with its `runs` runs listed, in a fresh context with clipboard access;
    fails if the page logs an error."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=url.rstrip("/"))
    opened = context.new_page()
    opened.on("console", lambda message: message.type == "error"
              and console.errors.append(f"{message.text} ({message.location.get('url')})"))
    opened.on("pageerror", lambda error: console.errors.append(f"uncaught: {error}"))
    opened.goto(url)
    expect(opened.locator("#run option")).to_have_count(runs)
    yield opened
    context.close()
    assert console.unexpected() == [], "the page reported errors"


@pytest.fixture
def page(browser, explorer_url, console):
    """The page of the two language models, opened on the first's first view."""
    yield from open_page(browser, explorer_url, console, 2)


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


def test_an_answer_to_an_older_request_is_dropped(page):
    # The first request is held in the browser until the second has been answered and drawn; when it is let
    # go, its answer arrives last and must not replace the newer one (every view asks through one rule).
    open_section(page, "surprisal")
    page.evaluate("""() => {
        const realFetch = window.fetch.bind(window);
        window.fetch = async (url, init) => {
            if (init && init.body && init.body.includes("HELD")) {
                await new Promise((resolve) => { window.release = resolve; });
            }
            return realFetch(url, init);
        };
        const realLatest = window.latest;
        window.settled = 0;
        window.latest = async (...args) => { try { return await realLatest(...args); } finally { window.settled++; } };
    }""")
    page.fill("#surprisal-text", "HELD back, then let go")
    page.click("#surprisal-button")
    page.fill("#surprisal-text", TEXT)
    page.click("#surprisal-button")
    expect(page.locator("#surprisal-view span.tok")).to_have_count(len(TEXT))
    page.evaluate("() => window.release()")
    page.wait_for_function("() => window.settled === 2")
    page.evaluate("() => new Promise((resolve) => setTimeout(resolve, 0))")  # the callers' drawing runs first
    assert "".join(span["text"] for span in token_spans(page, "surprisal-view")) == TEXT
    expect(page.locator("#surprisal-button")).not_to_have_class(re.compile("busy"))


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


def test_find_units_starts_with_a_pattern_that_works(page):
    open_section(page, "units")
    expect(page.locator("#pattern")).to_have_value(DEFAULT_PATTERN)
    page.click("#find-units-button")  # nothing typed: the default text and pattern
    expect(page.locator("#found-units button.found-unit").first).to_be_visible()
    expect(page.locator("#found-summary")).to_contain_text("The pattern covers")
    expect(page.locator("#units-error")).to_be_hidden()


def test_an_empty_pattern_is_not_sent(page):
    open_section(page, "units")
    sent = []
    page.on("request", lambda request: "/api/find-units" in request.url and sent.append(request))
    page.fill("#pattern", "")
    page.click("#find-units-button")
    expect(page.locator("#found-summary")).to_contain_text("Type a regular expression first")
    expect(page.locator("#units-error")).to_be_hidden()
    assert sent == []


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


# ---------------------------------------------------------------------------------------- taggers, classifiers

NAMES = ["Petrov", "Nakamuraki", "Papadoulos"]
PLAIN = ["alice saw the cat in a park bob", "carol met dan and then left"]


@pytest.fixture(scope="module")
def task_runs(runs, tmp_path_factory):
    """A tagger (three evaluations), a classifier (two) and the LSTM language model, in that order."""
    root = tmp_path_factory.mktemp("explore-tasks")
    return {"root": root, "tagger": train_tagger(root), "classifier": train_classifier(root), "lm": runs[1][0]}


@pytest.fixture(scope="module")
def task_explorer_url(task_runs, tmp_path_factory):
    """The URL of `charlm explore TAGGER CLASSIFIER LSTM` running as a real process."""
    yield from serve([task_runs[k] for k in ("tagger", "classifier", "lm")], tmp_path_factory.mktemp("task-cache"))


@pytest.fixture
def task_page(browser, task_explorer_url, console):
    """The page of the tagger, the classifier and the language model, opened on the tagger's first view."""
    yield from open_page(browser, task_explorer_url, console, 3)


def visible_tabs(page) -> list[str]:
    return [tab.get_attribute("id").removeprefix("tab-") for tab in page.locator(".tabs a:visible").all()]


def test_a_tagger_opens_on_its_tag_view_and_colours_each_characters_label(task_page, task_runs):
    expect(task_page.locator("#section-tag")).to_be_visible()
    assert visible_tabs(task_page) == ["tag", "evaluate", "curves", "model"]
    assert task_page.evaluate("location.hash") == "#tag"
    expect(task_page.locator("#tag-results .tag-doc").first).to_be_visible()  # the default text, tagged on opening
    task_page.fill("#tag-text", "\n".join(PLAIN))
    task_page.click("#tag-button")
    tagger = as_tagger(load_checkpoint(task_runs["tagger"]))
    restored = [r["output"] for r in tag_docs(tagger.params, tagger.cfg, tagger.vocab, tagger.heads, tagger.task,
                                                PLAIN, marks=tagger.marks)]
    expect(task_page.locator("#tag-results .tag-output")).to_have_text(restored)  # what `charlm tag` prints
    docs = [make_doc(tagger.task, text, tagger.marks) for text in PLAIN]
    probs = predict_docs(tagger.params, tagger.cfg, tagger.vocab, [d.text for d in docs])
    views = task_page.locator("#tag-results .tag-view")
    key = task_page.locator("#tag-legend .label-key", has_text="case: upper").locator(".swatch")
    upper_colour = np.array(rgb(key.evaluate("s => getComputedStyle(s).backgroundColor")))
    uppers = 0
    for d, (doc, doc_probs) in enumerate(zip(docs, probs, strict=True)):
        spans = views.nth(d).locator("span.tok").evaluate_all("""spans => spans.map(s => ({text: s.textContent,
            head: s.dataset.head, label: s.dataset.label, p: Number(s.dataset.probability),
            background: getComputedStyle(s).backgroundColor}))""")
        assert "".join(s["text"] for s in spans) == doc.text
        case = doc_probs[0].argmax(axis=1)
        for i, span in enumerate(spans):
            if span["head"] != "case":
                continue  # a word's end coloured by the mark predicted after it
            assert span["label"] == ("lower", "upper")[case[i]]
            assert span["p"] == pytest.approx(doc_probs[0][i].max(), abs=1e-4)
            if span["label"] == "upper":  # the label's colour, paler as it is less sure (white at p = 0)
                uppers += 1
                shade = 255 + (upper_colour - 255) * span["p"]
                np.testing.assert_allclose(rgb(span["background"]), shade, atol=1.5)
            else:
                assert rgb(span["background"]) in [(), (0, 0, 0)]  # "lower" marks nothing: no colour
    assert uppers >= 2  # the names
    views.nth(0).locator("span.tok").nth(0).hover()
    expect(task_page.locator("#tooltip")).to_contain_text("case")
    expect(task_page.locator("#tooltip .guess")).to_have_count(2)
    screenshot(task_page, "tag")


def test_a_tagger_evaluates_a_file_as_charlm_evaluate_does(task_page, task_runs):
    heldout = task_runs["root"] / "heldout.txt"
    open_section(task_page, "evaluate")
    expect(task_page.locator("#evaluate-form-hint")).to_contain_text("one document per line")
    task_page.set_input_files("#evaluate-file", str(heldout))
    task_page.click("#evaluate-button")
    tagger = as_tagger(load_checkpoint(task_runs["tagger"]))
    found = evaluate_docs(tagger.params, tagger.cfg, tagger.vocab, tagger.heads, tagger.task,
                          labelled_docs(tagger, heldout))
    expect(task_page.locator("#evaluate-summary")).to_have_text(
        f"heldout.txt: truecase+punctuate F1 {found['f1']:.4f} (precision {found['precision']:.4f}, recall "
        f"{found['recall']:.4f})")
    expect(task_page.locator("#evaluate-tables table.scores")).to_have_count(2)  # case and punct
    upper = task_page.locator("#evaluate-tables table.scores").nth(0).locator("tr", has_text="upper")
    assert upper.locator("td").all_text_contents()[2] == f"{found['heads']['case']['labels']['upper']['f1']:.4f}"
    screenshot(task_page, "evaluate")


def test_a_classifier_shows_each_texts_labels_and_its_hidden_states(task_page, task_runs):
    task_page.select_option("#run", "1")
    expect(task_page.locator("#section-classify")).to_be_visible()
    assert visible_tabs(task_page) == ["classify", "evaluate", "curves", "model"]
    task_page.fill("#classify-text", "\n".join(NAMES))
    task_page.click("#classify-button")
    cards = task_page.locator("#classify-results .class-card")
    expect(cards).to_have_count(3)
    ckpt = load_checkpoint(task_runs["classifier"])
    classifier = as_classifier(ckpt)
    expected = classify_texts(classifier, NAMES, top_k=len(classifier.labels))
    for i, found in enumerate(expected):
        rows = cards.nth(i).locator(".label-row")
        assert rows.locator(".label-name").all_text_contents() == [label for label, _ in found["top"]]
        shown = [float(p) for p in rows.evaluate_all("rows => rows.map(r => r.dataset.probability)")]
        assert shown == pytest.approx([p for _, p in found["top"]], abs=1e-6)
        widths = rows.locator(".label-bar span").evaluate_all("bars => bars.map(b => b.getBoundingClientRect().width)")
        assert widths == sorted(widths, reverse=True) and widths[0] > widths[-1]
        expect(rows.locator(".label-name").first).to_have_css("font-weight", "600")  # the chosen label
    for i, explained in enumerate(classify_texts(classifier, NAMES, explain=True)):
        card = cards.nth(i)
        tokens = card.locator(".class-text .effect")  # each character shaded by its effect on the label
        assert tokens.all_text_contents() == [token for token, _ in explained["tokens"]]
        effects = [float(e) for e in tokens.evaluate_all("spans => spans.map(s => s.dataset.effect)")]
        assert effects == pytest.approx([e for _, e in explained["tokens"]], abs=1e-6)
        strongest = int(np.argmax(np.abs(effects)))
        colour = tokens.nth(strongest).evaluate("s => getComputedStyle(s).backgroundColor")
        rgb = [int(v) for v in colour[colour.index("(") + 1:].split(",")[:3]]
        assert (rgb[1] > rgb[0]) == (effects[strongest] > 0), (colour, effects[strongest])

    cards.nth(1).click()  # Nakamuraki: its states, units by characters
    canvas = task_page.locator("#states-canvas")
    expect(canvas).to_have_attribute("data-chars", "10")
    cfg = ckpt.config
    expect(canvas).to_have_attribute("data-units", str(2 * cfg.hidden))  # both directions
    x = np.asarray(ckpt.vocab.encode(NAMES[1]))[:, None]
    _, _, cache = encoder_forward(ckpt.params, cfg, x, init_state(cfg, 1), lengths=np.array([10]))
    acts = encoder_activations(cfg, cache)
    states = np.concatenate([acts["layer.0.a"][:, 0], acts["layer.0.rev.a"][:, 0]], axis=1)  # (10, 2H)
    for t, u in (np.unravel_index(states.argmax(), states.shape), np.unravel_index(states.argmin(), states.shape)):
        pixel = task_page.evaluate("""([t, u]) => {
            const g = state.statesGeometry;
            const x = g.left + (t + 0.5) * g.width, y = g.top + (u + 0.5) * g.height;
            return [...document.getElementById('states-canvas').getContext('2d').getImageData(x, y, 1, 1).data];
        }""", [int(t), int(u)])
        red_for_high = pixel[0] > pixel[2] if states[t, u] > 0 else pixel[2] > pixel[0]
        assert red_for_high, (states[t, u], pixel)
        geometry = task_page.evaluate("state.statesGeometry")
        canvas.hover(position={"x": geometry["left"] + (t + 0.5) * geometry["width"],
                               "y": geometry["top"] + (u + 0.5) * geometry["height"]})
        expect(task_page.locator("#tooltip")).to_contain_text(f"{states[t, u]:.3f}")
    screenshot(task_page, "classify")


def test_switching_run_switches_the_views(task_page):
    expect(task_page.locator("#section-tag")).to_be_visible()
    open_section(task_page, "curves")
    task_page.select_option("#run", "1")  # a classifier: Curves applies to it too, so it stays
    expect(task_page.locator("#tab-classify")).to_be_visible()
    expect(task_page.locator("#tab-tag")).to_be_hidden()
    expect(task_page.locator("#section-curves")).to_be_visible()
    open_section(task_page, "classify")
    task_page.select_option("#run", "2")  # a language model: Classify does not apply, its first view opens
    expect(task_page.locator("#section-sample")).to_be_visible()
    assert visible_tabs(task_page) == ["sample", "surprisal", "units", "curves", "model"]
    assert task_page.evaluate("location.hash") == "#sample"
    task_page.select_option("#run", "0")
    expect(task_page.locator("#section-tag")).to_be_visible()
    assert visible_tabs(task_page) == ["tag", "evaluate", "curves", "model"]


def test_an_answer_arriving_after_the_run_changed_is_dropped(task_page):
    """The classifier's answer held until the page shows the language model: nothing of it is drawn, and the
    hidden states it would ask for are not asked of the language model (which has none: a 400)."""
    held, asked = [], []
    task_page.route("**/api/classify", lambda route: held.append(route))
    task_page.on("request", lambda request: asked.append(request.url.rsplit("/", 1)[-1]))
    task_page.select_option("#run", "1")
    open_section(task_page, "classify")
    expect(task_page.locator("#classify-button")).to_have_class(re.compile("busy"))
    for _ in range(200):  # the held request reaches the route while the page's events are dispatched
        if held:
            break
        task_page.wait_for_timeout(25)
    task_page.wait_for_timeout(200)  # room for a second request, which opening the view twice must not send
    assert len(held) == 1
    task_page.select_option("#run", "2")
    expect(task_page.locator("#section-sample")).to_be_visible()
    held[0].continue_()
    task_page.wait_for_load_state("networkidle")
    expect(task_page.locator("#classify-results .class-card")).to_have_count(0)
    expect(task_page.locator("#classify-button")).not_to_have_class(re.compile("busy"))
    assert "states" not in asked


def test_curves_mark_every_evaluation_and_the_kept_checkpoint_by_its_figure(task_page, task_runs):
    open_section(task_page, "curves")
    metric, loss = task_page.locator("#metric-svg"), task_page.locator("#curves-svg")
    expect(metric).to_be_visible()
    expect(metric.locator("circle.best-point")).to_have_count(2)  # the tagger's and the classifier's, by F1
    expect(loss.locator("circle.best-point")).to_have_count(1)  # the language model's, by loss
    expect(loss.locator("circle.eval-point")).to_have_count(3 + 2 + 3)  # every evaluation of each run
    expect(metric.locator("circle.eval-point")).to_have_count(3 + 2)
    expect(metric.locator(".axis-title").nth(1)).to_have_text("validation F1 / validation macro-F1")
    expect(loss.locator(".axis-title").nth(1)).to_have_text("loss (nats per label / nats per char)")
    kept = [load_checkpoint(task_runs[k] / "best.safetensors").train["step"] for k in ("tagger", "classifier", "lm")]
    steps = [int(s) for s in metric.locator("circle.best-point").evaluate_all("cs => cs.map(c => c.dataset.step)")]
    steps += [int(loss.locator("circle.best-point").get_attribute("data-step"))]
    assert steps == kept
    expect(metric.locator(".legend")).to_contain_text("classifier  kept: macro-F1")
    screenshot(task_page, "curves-tasks")


# ---------------------------------------------------------------------------------------- encoder–decoders

SOURCES = ["abc", "kideg"]


@pytest.fixture(scope="module")
def translate_runs(runs, tmp_path_factory):
    """An encoder–decoder with attention (two evaluations), one without, and the LSTM language model."""
    root = tmp_path_factory.mktemp("explore-translate")
    return {"root": root, "translator": train_translator(root),
            "plain": train_translator(root, "plain", attention="none", steps=10, eval_every=10), "lm": runs[1][0]}


@pytest.fixture(scope="module")
def translate_explorer_url(translate_runs, tmp_path_factory):
    """The URL of `charlm explore TRANSLATOR PLAIN LSTM` running as a real process."""
    yield from serve([translate_runs[k] for k in ("translator", "plain", "lm")],
                     tmp_path_factory.mktemp("translate-cache"))


@pytest.fixture
def translate_page(browser, translate_explorer_url, console):
    """The page of the two encoder–decoders and the language model, opened on the first's first view."""
    yield from open_page(browser, translate_explorer_url, console, 3)


def attention_pixel(page, index: int, column: int, row: int) -> list[int]:
    """The colour at the centre of a cell of the index-th attention heatmap."""
    return page.evaluate("""([i, c, r]) => {
        const g = state.attentionGeometry[i];
        const canvas = document.querySelectorAll('#translate-results canvas.attention')[i];
        return [...canvas.getContext('2d').getImageData(g.left + (c + 0.5) * g.width, g.top + (r + 0.5) * g.height,
                                                        1, 1).data];
    }""", [index, column, row])


def test_a_translator_writes_each_sources_outputs_and_draws_their_attention(translate_page, translate_runs):
    expect(translate_page.locator("#section-translate")).to_be_visible()
    assert visible_tabs(translate_page) == ["translate", "evaluate", "curves", "model"]
    translate_page.fill("#translate-text", "\n".join(SOURCES))
    translate_page.fill("#beam", "3")
    translate_page.fill("#nbest", "2")
    translate_page.click("#translate-button")
    cards = translate_page.locator("#translate-results .translation")
    expect(cards).to_have_count(2)
    translator = as_translator(load_checkpoint(translate_runs["translator"]))
    expected = translate_texts(translator, SOURCES, attention=True, beam=3, nbest=2)
    expect(cards.locator(".translation-source")).to_have_text(SOURCES)
    for i, want in enumerate(expected):
        outputs = cards.nth(i).locator(".translation-output")
        expect(outputs.locator(".translation-text")).to_have_text([o["output"] or "∅" for o in want["nbest"]])
        expect(outputs.nth(0)).to_have_class(re.compile(r"\bbest\b"))
        expect(outputs.nth(0).locator(".translation-scores")).to_contain_text(
            f"log p {want['logprob']:.2f} nats · {want['score']:.3f} per token")
        canvas = cards.nth(i).locator("canvas.attention")
        rows, columns = len(want["output"]) + 1, len(want["source"])  # the output's tokens and <EOS>, the source's
        expect(canvas).to_have_attribute("data-rows", str(rows))
        expect(canvas).to_have_attribute("data-columns", str(columns))
        weights = np.array(want["attention"])
        geometry = translate_page.evaluate(f"state.attentionGeometry[{i}]")
        box = canvas.bounding_box()
        assert box["width"] == geometry["left"] + columns * geometry["width"]
        assert box["height"] == geometry["top"] + rows * geometry["height"]
        high = np.unravel_index(weights.argmax(), weights.shape)
        low = np.unravel_index(weights.argmin(), weights.shape)
        dark = attention_pixel(translate_page, i, int(high[1]), int(high[0]))
        light = attention_pixel(translate_page, i, int(low[1]), int(low[0]))
        assert sum(dark[:3]) < sum(light[:3]), (dark, light)  # a heavier weight, a darker shade
        canvas.hover(position={"x": geometry["left"] + (high[1] + 0.5) * geometry["width"],
                               "y": geometry["top"] + (high[0] + 0.5) * geometry["height"]})
        expect(translate_page.locator("#tooltip")).to_contain_text(f"weight {weights[high]:.4f}")
    expect(translate_page.locator("#translate-legend")).to_be_visible()
    screenshot(translate_page, "translate")


def test_a_model_without_attention_says_so(translate_page):
    translate_page.select_option("#run", "1")
    expect(translate_page.locator("#section-translate")).to_be_visible()
    translate_page.fill("#translate-text", "abc")
    translate_page.click("#translate-button")
    expect(translate_page.locator("#translate-results .translation")).to_have_count(1)
    expect(translate_page.locator("#translate-summary")).to_contain_text("This model has no attention")
    expect(translate_page.locator("#translate-results canvas")).to_have_count(0)
    expect(translate_page.locator("#translate-legend")).to_be_hidden()


def test_a_translator_evaluates_pairs_as_charlm_evaluate_does(translate_page, translate_runs):
    heldout = translate_runs["root"] / "heldout.tsv"
    open_section(translate_page, "evaluate")
    expect(translate_page.locator("#evaluate-form-hint")).to_contain_text("source<TAB>target")
    translate_page.fill("#evaluate-beam", "2")
    translate_page.set_input_files("#evaluate-file", str(heldout))
    translate_page.click("#evaluate-button")
    found = evaluate_pairs(as_translator(load_checkpoint(translate_runs["translator"])), heldout, beam=2)
    expect(translate_page.locator("#evaluate-summary")).to_have_text(
        f"heldout.tsv: exact match {found['exact_match']:.4f}, BLEU {found['bleu']:.2f}, chrF {found['chrf']:.2f} "
        f"(beam 2)")
    table = translate_page.locator("#evaluate-tables table.scores")
    for name, value in (("TER", f"{found['ter']:.4f}"), ("WER", f"{found['wer']:.4f}"),
                        ("loss", f"{found['nats_per_token']:.4f}")):
        expect(table.locator("tr", has_text=re.compile(f"^{name} ")).locator("td")).to_have_text(value)
    screenshot(translate_page, "evaluate-translate")


def test_a_translators_model_view_and_a_language_models_views(translate_page):
    open_section(translate_page, "model")
    info = translate_page.locator("#model-info")
    expect(info.locator("caption")).to_contain_text(["Architecture", "Task", "Source vocabulary"])
    expect(info.locator("tr", has_text="target characters")).to_contain_text("k")
    expect(info.locator("tr", has_text="best validation loss")).to_contain_text("nats per target token")
    translate_page.select_option("#run", "2")  # a language model: Model applies to it too, so it stays
    expect(translate_page.locator("#tab-sample")).to_be_visible()
    expect(translate_page.locator("#section-model")).to_be_visible()
    assert visible_tabs(translate_page) == ["sample", "surprisal", "units", "curves", "model"]
    open_section(translate_page, "surprisal")
    translate_page.select_option("#run", "0")  # Surprisal does not apply: the translator's first view opens
    expect(translate_page.locator("#section-translate")).to_be_visible()
    assert visible_tabs(translate_page) == ["translate", "evaluate", "curves", "model"]
