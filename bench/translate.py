"""Encoder–decoder benchmarks: grapheme-to-phoneme on CMUdict (the field's standard seq2seq benchmark), French
to English on Tatoeba pairs, and surnames from their language (one-to-many), charlm against a PyTorch
encoder–decoder of the same shape trained for the same time (bench/torch_seq2seq.py; torch is never a
dependency of charlm) and, for G2P, g2p-en's neural model when it can run offline.

G2P split (the issue's): CMUdict's sorted unique words shuffled by random.Random(1234); the first 3,000 words
are the test set (all their pronunciations are references), the rest train. charlm trains with
`charlm train train.tsv --task translate --source-tokens char --target-tokens symbols --time T` and no other
flag, and is scored by `charlm evaluate --json` (greedy and beam 5, each timed whole, loading included).

    flock /tmp/charlm-bench.lock .venv/bin/python bench/translate.py --suite g2p [--time 20m] [--peers torch,g2p-en]
"""

import argparse
import importlib.util
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHARLM = [sys.executable, "-m", "charlm"]
HERE = Path(__file__).resolve().parent
CORPORA = HERE.parents[1] / "shared" / "corpora"
TEST_WORDS = 3000
# Names sampled per language for the classifier's check.
SAMPLES = 100
SPLIT_SEED = 1234


def run(args, **kw) -> str:
    done = subprocess.run(list(map(str, args)), capture_output=True, text=True, **kw)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(map(str, args[:4]))} failed: {done.stderr.strip()[-2000:]}")
    return done.stdout


def g2p_split(work: Path) -> tuple[Path, Path]:
    """train.tsv and test.tsv of the issue's CMUdict split, in `work`."""
    whole = work / "cmudict.tsv"
    run([*CHARLM, "corpus", "get", "cmudict", "-o", whole])
    lines = [line.split("\t") for line in whole.read_text(encoding="utf-8").splitlines()]
    words = sorted({w for w, _ in lines})
    random.Random(SPLIT_SEED).shuffle(words)
    test_words = set(words[:TEST_WORDS])
    train, test = work / "train.tsv", work / "test.tsv"
    with train.open("w", encoding="utf-8") as tr, test.open("w", encoding="utf-8") as te:
        for w, p in lines:
            (te if w in test_words else tr).write(f"{w}\t{p}\n")
    return train, test


def held_out_split(path: Path, work: Path, *, by_line: bool) -> tuple[Path, Path]:
    """train.tsv and test.tsv with 10% held out (seeded): whole sources (every reference of a held-out source
    with it), or single lines when the sources repeat by design (a label -> its names)."""
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if "\t" in line]
    rng = random.Random(SPLIT_SEED)
    if by_line:
        held = set(rng.sample(range(len(lines)), len(lines) // 10))
        test_rows = held
    else:
        sources = sorted({line.split("\t")[0] for line in lines})
        held_sources = set(rng.sample(sources, len(sources) // 10))
        test_rows = {i for i, line in enumerate(lines) if line.split("\t")[0] in held_sources}
    train, test = work / "train.tsv", work / "test.tsv"
    train.write_text("".join(line + "\n" for i, line in enumerate(lines) if i not in test_rows), encoding="utf-8")
    test.write_text("".join(line + "\n" for i, line in enumerate(lines) if i in test_rows), encoding="utf-8")
    return train, test


def charlm_arm(train: Path, test: Path, seconds: float, work: Path, flags=(), beams=(1, 5)) -> dict:
    """charlm trained for `seconds` with `flags`, evaluated with each of `beams` (1 = greedy)."""
    out = work / "charlm-run"
    last = run([*CHARLM, "train", train, "--task", "translate", *flags, "--time", f"{seconds:g}s", "--out", out,
                "--json"]).strip().splitlines()[-1]
    result = json.loads(last)
    found = {"tokens_per_sec": result.get("chars_per_sec"), "steps": result.get("steps"),
             "epochs": result.get("epochs"), "run": str(out)}
    for beam in beams:
        start = time.perf_counter()
        scores = json.loads(run([*CHARLM, "evaluate", out, test, "--beam", beam, "--json"]))
        found[f"beam{beam}"] = {**scores, "seconds": round(time.perf_counter() - start, 2)}
    return found


def torch_arm(train: Path, test: Path, seconds: float, charlm_run: str, *flags) -> dict:
    """The PyTorch peer of the shape and training options charlm's run used (its recipe's or the flags')."""
    if importlib.util.find_spec("torch") is None:
        return {"error": "torch is not installed: pip install torch (for this benchmark only)"}
    used = json.loads((Path(charlm_run) / "config.json").read_text(encoding="utf-8"))
    shape = [f"--{name}={used[name]}" for name in ("hidden", "layers", "dropout", "batch", "lr", "attention")]
    return json.loads(run([sys.executable, HERE / "torch_seq2seq.py", "--train", train, "--test", test, "--time",
                           seconds, *shape, *flags]).strip().splitlines()[-1])


def translations(run_dir: str, sources: list[str]) -> list[dict]:
    return json.loads(run([*CHARLM, "translate", run_dir, *sources, "--beam", 5, "--json"]))


def g2p(a, seconds: float, work: Path) -> dict:
    train, test = g2p_split(work)
    flags = ["--source-tokens", "char", "--target-tokens", "symbols", *a.flags.split()]
    report = {"charlm": charlm_arm(train, test, seconds, work, flags)}
    if "torch" in a.peers:
        report["torch"] = torch_arm(train, test, seconds, report["charlm"]["run"], "--target-tokens", "symbols")
    if "g2p-en" in a.peers:
        report["g2p-en"] = g2p_en_arm(test)
    return report


def fra_eng(a, seconds: float, work: Path) -> dict:
    train, test = held_out_split(Path(a.corpus or CORPORA / "fra-eng.tsv"), work, by_line=False)
    report = {"charlm": charlm_arm(train, test, seconds, work, ["--tokens", "word", *a.flags.split()])}
    sources = [line.split("\t")[0] for line in test.read_text(encoding="utf-8").splitlines()[:5]]
    report["examples"] = translations(report["charlm"]["run"], [*sources, "Voulez-vous chanter avec moi?"])
    if "torch" in a.peers:
        report["torch"] = torch_arm(train, test, seconds, report["charlm"]["run"], "--source-tokens", "word",
                                    "--target-tokens", "word", "--embed", "256")
    return report


def names(a, seconds: float, work: Path) -> dict:
    """A surname from its language (one-to-many), against a character language model of the surnames alone
    trained as long: held-out nats per character of the same names, each name scored on its own from a fresh
    state with its end counted (`charlm score`, as the encoder–decoder scores each name). The corpus lists names
    by language and alphabetically, so a model reading the test names as one stream would learn the language
    and the opening letters from the name before: the language model trains on its names shuffled (seeded),
    and scores none of them from its neighbours."""
    train, test = held_out_split(Path(a.corpus or CORPORA / "names-by-language.tsv"), work, by_line=True)
    report = {"charlm": charlm_arm(train, test, seconds, work, ["--source-tokens", "symbols", "--target-tokens",
                                                                "char", *a.flags.split()], beams=(1,))}
    names_train = work / "names-train.txt"
    train_names = [line.split("\t")[1] for line in train.read_text(encoding="utf-8").splitlines()]
    random.Random(SPLIT_SEED).shuffle(train_names)
    names_train.write_text("".join(name + "\n" for name in train_names), encoding="utf-8")
    test_names = "".join(line.split("\t")[1] + "\n" for line in test.read_text(encoding="utf-8").splitlines())
    lm = work / "lm-run"
    run([*CHARLM, "train", names_train, "--eos", "lines", "--time", f"{seconds:g}s", "--out", lm])
    scored = json.loads(run([*CHARLM, "score", lm, "--json", "-q"], input=test_names))
    tokens = sum(s["tokens"] for s in scored)
    report["unconditioned_lm"] = {"names": len(scored), "tokens": tokens,
                                  "nats_per_char": -sum(s["logprob"] for s in scored) / tokens}
    samples = {label: [o["output"] for o in json.loads(run(
        [*CHARLM, "translate", report["charlm"]["run"], label, "-n", SAMPLES, "--temperature", 0.8, "--seed", 1,
         "--json"]))[0]["nbest"]] for label in sorted({line.split("\t")[0] for line in lines(test)})}
    report["samples"] = {label: found[:5] for label, found in samples.items()
                         if label in ("Russian", "Italian", "Japanese", "Scottish")}
    report["classified_as_asked"] = classified_as_asked(train, samples, seconds, work)
    return report


def lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def classified_as_asked(train: Path, samples: dict[str, list[str]], seconds: float, work: Path) -> dict:
    """How many of each language's sampled names charlm's own classifier (trained on the same training names
    as long) labels with that language."""
    classifier = work / "classifier-run"
    run([*CHARLM, "train", train, "--task", "classify", "--time", f"{seconds:g}s", "--out", classifier])
    texts = [name for names in samples.values() for name in names if name.strip()]  # an empty sample is a miss
    labelled = json.loads(run([*CHARLM, "classify", classifier, "--json", "-q"], input="\n".join(texts) + "\n"))
    label_of = dict(zip(texts, (row["label"] for row in labelled), strict=True))
    found = {label: sum(label_of.get(name) == label for name in names) for label, names in samples.items()}
    asked = sum(len(names) for names in samples.values())
    return {"per_language": found, "share": sum(found.values()) / asked, "of": asked}


def g2p_en_arm(test: Path) -> dict:
    """g2p-en's neural model (`predict`, its dictionary lookup bypassed) on the test words, when importable
    offline (it fetches NLTK data on first import)."""
    try:
        from g2p_en import G2p
        model = G2p()
    except Exception as exc:  # not installed, or NLTK data not downloadable here
        return {"error": f"g2p-en unavailable: {type(exc).__name__}: {str(exc)[:200]}"}
    refs = {}
    for line in test.read_text(encoding="utf-8").splitlines():
        w, p = line.split("\t")
        refs.setdefault(w, []).append(p.split())
    start = time.perf_counter()
    outputs = {w: model.predict(w) for w in refs}
    seconds = time.perf_counter() - start
    from charlm.tasks.translate.translate_inference import token_edits
    wrong = sum(outputs[w] not in r for w, r in refs.items())
    edits = sum(min((token_edits(outputs[w], x), len(x)) for x in r)[0] for w, r in refs.items())
    total = sum(min((token_edits(outputs[w], x), len(x)) for x in r)[1] for w, r in refs.items())
    return {"wer": wrong / len(refs), "per": edits / total, "words_per_sec": round(len(refs) / seconds)}


SUITES = {"g2p": g2p, "fra-eng": fra_eng, "names": names}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--suite", choices=tuple(SUITES), default="g2p")
    ap.add_argument("--time", default=None, help="training time of each arm [default: g2p 20m, fra-eng 10m, "
                                                  "names 5m]")
    ap.add_argument("--peers", default="torch,g2p-en", help="comma-separated: torch, g2p-en (or empty)")
    ap.add_argument("--flags", default="", help="extra charlm train flags (an ablation; the goals use none)")
    ap.add_argument("--corpus", help="fra-eng and names: the corpus [default: ../shared/corpora/...]")
    ap.add_argument("--work", help="keep the data and runs here [default: a temporary directory]")
    a = ap.parse_args()
    from charlm.training.options import parse_duration
    seconds = parse_duration(a.time or {"g2p": "20m", "fra-eng": "10m", "names": "5m"}[a.suite])
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(a.work or tmp)
        work.mkdir(parents=True, exist_ok=True)
        report = {"suite": a.suite, "seconds": seconds, **SUITES[a.suite](a, seconds, work)}
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
