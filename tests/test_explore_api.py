"""The explorer's JSON API over real HTTP (a server in a thread) on real trained runs, and `charlm explore`
as a real process: every endpoint's answer against the library, and every kind of bad request."""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import urllib.error
import urllib.request

import numpy as np
import pytest
from helpers import CHARLM

from charlm.explore.api import MAX_TEXT_CHARS
from charlm.explore.runs import Explorer
from charlm.explore.server import start_in_thread
from charlm.store.checkpoint import load_checkpoint, save_checkpoint
from charlm.tasks.lm.inspection import read_text
from charlm.tasks.lm.sampling import generate
from charlm.tasks.registry import train
from charlm.training.options import TrainOptions
from charlm.viz.curves import load_curves


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two short real runs (file mode, 10% held out) on a small generated corpus with quoted phrases."""
    root = tmp_path_factory.mktemp("explore")
    rng = np.random.default_rng(0)
    words = ["the", "cat", "sat", "on", "a", "mat", "and", "said"]
    lines = [" ".join(rng.choice(words, 6)) + f' "{rng.choice(words)} {rng.choice(words)}".' for _ in range(300)]
    corpus = root / "corpus.txt"
    corpus.write_text("\n".join(lines) + "\n", encoding="utf-8")
    made = []
    for name, cell in (("lstm", "lstm"), ("gru", "gru")):
        out = root / name
        train(TrainOptions(corpus=str(corpus), out=str(out), cell=cell, hidden=16, layers=2, batch=4, seq_len=32,
                           steps=12, eval_every=4, warmup=1))
        made.append(out)
    return corpus, made


@pytest.fixture(scope="module")
def server(runs):
    srv = start_in_thread(Explorer(runs[1]))
    yield srv
    srv.shutdown()
    srv.server_close()


def call(server, path, body=None, *, method=None):
    """(status, parsed JSON or list of NDJSON records) of a request to the server."""
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    request = urllib.request.Request(server.url.rstrip("/") + path, data=data, method=method)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            raw, status, kind = response.read(), response.status, response.headers["Content-Type"]
    except urllib.error.HTTPError as exc:
        raw, status, kind = exc.read(), exc.code, exc.headers["Content-Type"]
    if kind == "application/x-ndjson":
        return status, [json.loads(line) for line in raw.decode().splitlines()]
    assert kind == "application/json", kind
    return status, json.loads(raw)


def test_static_files_are_the_packaged_page(server):
    with urllib.request.urlopen(server.url, timeout=10) as r:
        page = r.read().decode()
        assert r.headers["Content-Type"].startswith("text/html")
    assert "/explore.js" in page and "/explore.css" in page
    for name, kind in (("explore.js", "text/javascript"), ("explore.css", "text/css")):
        with urllib.request.urlopen(server.url + name, timeout=10) as r:
            assert r.headers["Content-Type"].startswith(kind) and r.read()


def test_runs_and_model(server, runs):
    status, listed = call(server, "/api/runs")
    assert status == 200 and [r["name"] for r in listed["runs"]] == ["lstm", "gru"]
    for index, cell, kinds in ((0, "lstm", ["a", "c"]), (1, "gru", ["a"])):
        status, model = call(server, f"/api/model?run={index}")
        assert status == 200 and model["model"]["cell"] == cell and model["model"]["hidden"] == 16
        assert model["units"] == {"layers": 2, "hidden": 16, "kinds": kinds}
        assert model["run"] == {"index": index, "name": cell}
        assert model["kind"] == "lm" and model["views"] == ["sample", "surprisal", "units", "curves", "model"]
        assert model["training"]["step"] == load_checkpoint(runs[1][index]).train["step"]


def test_validation_text_is_the_held_out_tail(server, runs):
    corpus = runs[0].read_text(encoding="utf-8")
    status, found = call(server, "/api/validation-text?run=0")
    assert status == 200 and len(found["text"]) > 100
    assert corpus.rfind(found["text"]) >= int(0.85 * len(corpus))  # file mode holds out the last 10%


def test_surprisal_matches_the_reading(server, runs):
    text = 'the cat said "on a mat".\nthe'
    status, view = call(server, "/api/surprisal", {"run": 0, "text": text})
    assert status == 200 and "".join(t["text"] for t in view["tokens"]) == text
    ckpt = load_checkpoint(runs[1][0])
    reading = read_text(ckpt.params, ckpt.config, ckpt.vocab, text)
    np.testing.assert_allclose([t["bits"] for t in view["tokens"]], reading.bits)
    assert view["bits_per_char"] == pytest.approx(reading.bits.sum() / len(text))
    assert all(len(t["top"]) == 5 for t in view["tokens"])


def test_units_and_find_units(server, runs):
    text = 'the cat "sat on" a mat and "said the" cat'
    status, unit = call(server, "/api/units", {"run": 0, "text": text, "layer": 1, "unit": 7, "kind": "c"})
    ckpt = load_checkpoint(runs[1][0])
    reading = read_text(ckpt.params, ckpt.config, ckpt.vocab, text)
    assert status == 200 and unit["tokens"] == list(text)
    np.testing.assert_allclose(unit["values"], reading.units["c"][:, 1, 7], rtol=1e-6)
    assert unit["high"] == pytest.approx(np.abs(reading.units["c"][:, 1, 7]).max()) and unit["low"] == -unit["high"]
    status, found = call(server, "/api/find-units", {"run": 0, "text": text, "pattern": '"[^"]*"', "top": 5})
    assert status == 200 and found["matched"] == 18 and found["total"] == len(text)
    scores = [u["score"] for u in found["units"]]
    assert len(scores) == 5 and scores == sorted(scores, reverse=True)


def test_the_pages_default_pattern_finds_units_in_its_default_text(server):
    status, listed = call(server, "/api/runs")
    defaults = listed["defaults"]
    assert status == 200 and defaults["pattern"] and defaults["text"]
    body = {"run": 0, "text": defaults["text"], "pattern": defaults["pattern"]}
    status, found = call(server, "/api/find-units", body)
    assert status == 200 and 0 < found["matched"] < found["total"] and found["units"]
    assert found["matched"] == sum(len(quoted) for quoted in re.findall(defaults["pattern"], defaults["text"]))


def test_curves_are_each_runs_metrics(server, runs):
    status, found = call(server, "/api/curves")
    assert status == 200
    assert found["runs"] == [load_curves(run).to_dict() for run in runs[1]]


def test_long_curves_are_thinned_to_the_cap(runs, tmp_path, monkeypatch):
    from charlm.explore import api

    run = tmp_path / "long"
    shutil.copytree(runs[1][0], run)
    monkeypatch.setattr(api, "MAX_CURVE_POINTS", 5)
    full = load_curves(run)
    (thinned,) = api.curves(Explorer([run]), {})["runs"]
    assert len(thinned["steps"]) == 5
    assert (thinned["steps"][0], thinned["steps"][-1]) == (full.steps[0], full.steps[-1])
    assert thinned["train_loss"] == [full.train_loss[full.steps.index(s)] for s in thinned["steps"]]
    assert thinned["val_loss"] == full.val_loss  # evaluations are few: all kept


def test_sample_streams_the_samples_it_returns(server, runs):
    body = {"run": 1, "prime": "the ", "temperature": 0.9, "top_k": 5, "length": 120, "seed": 3, "num_samples": 2}
    status, records = call(server, "/api/sample", body)
    assert status == 200 and records[-1]["done"] is True
    done, deltas = records[-1], records[:-1]
    texts = ["".join(r["text"] for r in deltas if r["sample"] == i) for i in range(2)]
    assert texts == [s["text"] for s in done["samples"]]
    ckpt = load_checkpoint(runs[1][1])
    expected = generate(ckpt.params, ckpt.config, ckpt.vocab, num_samples=2, length=120, temperature=0.9, top_k=5,
                        prime="the ", seed=3)
    assert [s.text for s in expected] == texts and all(t.startswith("the ") for t in texts)
    assert done["command"] == (f"charlm sample {runs[1][1]} --temperature 0.9 --length 120 -n 2 --top-k 5 "
                               f"--seed 3 --prime 'the '")


@pytest.mark.parametrize(("path", "body", "status", "message"), [
    ("/api/sample", {"temperature": -1}, 400, "temperature must lie in"),
    ("/api/sample", {"length": 10**6}, 400, "length must lie in"),
    ("/api/sample", {"num_samples": "3"}, 400, "num_samples must be a number"),
    ("/api/surprisal", {"text": ""}, 400, "text is empty"),
    ("/api/surprisal", {}, 400, "text is required"),
    ("/api/surprisal", {"text": "x" * (MAX_TEXT_CHARS + 1)}, 413, "the limit is 20,000"),
    ("/api/surprisal", {"run": 7, "text": "the"}, 404, "no run 7"),
    ("/api/units", {"text": "the", "layer": 2}, 400, "no unit 0 in layer 2"),
    ("/api/units", {"run": 1, "text": "the", "kind": "c"}, 400, "kind must be one of a"),
    ("/api/find-units", {"text": "the", "pattern": "("}, 400, "not a regular expression"),
    ("/api/find-units", {"text": "the", "pattern": "q"}, 400, "matches no token"),
    ("/api/find-units", {"text": "the", "pattern": "."}, 400, "matches every token"),
    ("/api/surprisal", b"{not json", 400, "the body is not JSON"),
    ("/api/surprisal", b"[1, 2]", 400, "must be a JSON object"),
    ("/api/model?run=../../etc", None, 400, "run must be a number"),
    ("/api/nothing", None, 404, "no GET /api/nothing"),
    ("/../../etc/passwd", None, 404, "no GET"),
    ("/api/surprisal", None, 405, "no GET /api/surprisal"),
])
def test_bad_requests_get_a_json_error(server, path, body, status, message):
    got, answer = call(server, path, body)
    assert got == status and message in answer["error"] and "Traceback" not in answer["error"]


def test_a_newer_checkpoint_is_picked_up(runs, tmp_path):
    run = tmp_path / "copy"
    shutil.copytree(runs[1][0], run)
    srv = start_in_thread(Explorer([run]))
    try:
        _, before = call(srv, "/api/model")
        ckpt = load_checkpoint(run)
        params = {k: v * 0.5 for k, v in ckpt.params.items()}
        save_checkpoint(run / "best.safetensors", params=params, config=ckpt.config, vocab=ckpt.vocab,
                        data=ckpt.data, train=ckpt.train)
        _, after = call(srv, "/api/model")
        assert before["payload_sha256"] != after["payload_sha256"]
        status, answer = call(srv, "/api/validation-text")
        assert status == 200  # the corpus is still there
        os.rename(runs[0], runs[0].with_suffix(".moved"))
        try:
            status, answer = call(srv, "/api/validation-text")
        finally:
            os.rename(runs[0].with_suffix(".moved"), runs[0])
        assert status == 404 and "the run's corpus is gone" in answer["error"]
    finally:
        srv.shutdown()
        srv.server_close()


@pytest.mark.slow
def test_explore_serves_until_interrupted(runs):
    proc = subprocess.Popen([*CHARLM, "explore", str(runs[1][0]), "--port", "0", "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        ready = json.loads(proc.stdout.readline())
        with urllib.request.urlopen(ready["url"] + "api/runs", timeout=30) as r:
            assert json.loads(r.read())["runs"][0]["path"] == str(runs[1][0])
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 130
    assert f"serving {ready['url']}" in err and "Traceback" not in err


@pytest.mark.slow
def test_explore_refuses_a_busy_port_and_a_non_run(runs, tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = subprocess.run([*CHARLM, "explore", str(runs[1][0]), "--port", str(port)], capture_output=True,
                              text=True, timeout=60)
    assert done.returncode == 2 and f"--port {port}: cannot listen on it" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    done = subprocess.run([*CHARLM, "explore", str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "not a charlm run directory" in done.stderr and "Traceback" not in done.stderr
