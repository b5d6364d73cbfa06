"""Checkpoints written before model kinds were stored load with their kind derived, and every command prints
what the charlm that wrote them printed (tests/data/v1_checkpoints/README.md says how they were made)."""

import json
from pathlib import Path

import pytest
from helpers import invoke

from charlm.store.checkpoint import load_checkpoint

OLD = Path(__file__).parent / "data" / "v1_checkpoints"


def run_json(*args) -> object:
    result = invoke(*args, "--json", catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.mark.parametrize(("name", "kind"), [("lm", "lm"), ("tagger", "tagger"), ("classifier", "classifier")])
def test_an_old_checkpoint_loads_with_its_kind_derived(name, kind):
    raw = json.loads(load_checkpoint(OLD / f"{name}.safetensors").meta["config"])
    assert "kind" not in raw  # written before kinds were stored
    assert load_checkpoint(OLD / f"{name}.safetensors").config.kind == kind
    assert run_json("info", str(OLD / f"{name}.safetensors"))["kind"] == kind


def test_an_old_language_model_samples_and_scores_as_it_did():
    samples = run_json("sample", str(OLD / "lm.safetensors"), "-n", "2", "--length", "60", "--temperature", "0.8",
                       "--seed", "7")
    assert samples == json.loads((OLD / "sample.json").read_text())
    scored = run_json("perplexity", str(OLD / "lm.safetensors"), str(OLD / "lm.txt"))
    expected = json.loads((OLD / "perplexity.json").read_text())
    assert scored["files"][0]["nats_per_char"] == pytest.approx(expected["files"][0]["nats_per_char"], rel=1e-9)


def test_an_old_tagger_and_classifier_answer_as_they_did():
    tagged = run_json("tag", str(OLD / "tagger.safetensors"), "the cat sat on a mat. a bird sang")
    assert tagged == json.loads((OLD / "tag.json").read_text())
    found = run_json("classify", str(OLD / "classifier.safetensors"), "the cat", "the dog ran to the red barn while")
    assert found == json.loads((OLD / "classify.json").read_text())
