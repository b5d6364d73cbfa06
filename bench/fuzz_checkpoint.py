"""Fuzz the checkpoint loader: >= 10,000 damaged, foreign and crafted files; only CheckpointError may come out.

For every case the file is written to disk and `load_checkpoint` is called. Outcomes:
- rejected: CheckpointError (the only acceptable failure)
- same: the file loaded and means exactly what the original means (config, vocabulary, every array, the
  training state, data and RNG state). Only a mutation that cannot change the meaning may do this, such as a
  byte replaced by another JSON whitespace character inside the header's padding.
- DIFFERENT: the file loaded but means something else            -> failure
- CRASH:<type>: any other exception                              -> failure
- SLOW: one case took longer than the time bound (--case-seconds) -> failure (a hang)
Memory: the peak RSS (getrusage) may grow by at most --max-rss-growth MB over the whole run (a length
prefix or a shape claiming terabytes must be refused before anything is allocated).

Categories: random bytes, every truncation of a small checkpoint, byte flips (and byte replacements),
crafted headers (huge lengths, offsets past the end, overlaps, holes, duplicate keys, wrong dtypes and
shapes, junk JSON), resealed files with a valid checksum but invalid content (NaN weights, newer/odd
format versions, config or vocabulary that contradicts the tensors, missing/extra tensors).

Run (2 shared cores, one benchmark at a time):
    flock /tmp/charlm-bench.lock .venv/bin/python bench/fuzz_checkpoint.py
"""

import argparse
import json
import random
import resource
import struct
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import safetensors.numpy

from charlm.engine.optim import make_optimizer
from charlm.errors import CheckpointError
from charlm.models.config import ModelConfig
from charlm.models.lm import init_params, init_state
from charlm.store.checkpoint import load_checkpoint, payload_digest, save_checkpoint
from charlm.store.safetensors_io import MAX_HEADER_BYTES
from charlm.text.tokenizer import Vocab

DTYPES = ["F64", "F32", "F16", "BF16", "I64", "I32", "I16", "I8", "U64", "U32", "U16", "U8", "BOOL", "F8_E4M3",
          "C64", "f32", "", "F3", "STRING"]
HUGE = [2**64 - 1, 2**63, 2**62, 2**40, 2**32, 2**31 - 1, MAX_HEADER_BYTES + 1, 10**15]


def base_checkpoint(directory: Path) -> bytes:
    """A small but complete checkpoint: LSTM, Adam slots, carried state, RNG state."""
    vocab = Vocab.build({"a": 5, "b": 3, "c": 2, "\n": 2, "é": 1})
    cfg = ModelConfig(cell="lstm", vocab_size=vocab.size, hidden=4, layers=1)
    rng = np.random.default_rng(0)
    params = init_params(cfg, rng)
    opt = make_optimizer("adam", params)
    state = [tuple(a + 0.25 for a in layer) for layer in init_state(cfg, 2)]
    path = directory / "base.safetensors"
    save_checkpoint(path, params=params, config=cfg, vocab=vocab, data={"eos_mode": "file", "corpus_sha256": "ab"},
                    train={"step": 7, "cursor": {"epoch": 0, "batch": 1}, "options": {"lr": 0.002}},
                    optim=opt.state_arrays(), state=state, rng=rng.bit_generator.state)
    return path.read_bytes()


def split(blob: bytes):
    (n,) = struct.unpack("<Q", blob[:8])
    return json.loads(blob[8:8 + n]), blob[8:8 + n], blob[8 + n:]


def pack(header_bytes: bytes, payload: bytes, length: int | None = None) -> bytes:
    return struct.pack("<Q", len(header_bytes) if length is None else length) + header_bytes + payload


def reseal(blob: bytes, change) -> bytes:
    """Change tensors/metadata, then recompute the checksum: the container and digest are valid."""
    header, _, _ = split(blob)
    meta = dict(header["__metadata__"])
    tensors = {k: np.array(v) for k, v in safetensors.numpy.load(blob).items()}
    change(tensors, meta)
    meta["payload_sha256"] = payload_digest(tensors, meta)
    return safetensors.numpy.save(tensors, metadata=meta)


# ------------------------------------------------------------------------------------------ generators


def gen_random_bytes(r: random.Random, base: bytes, n: int):
    for i in range(n):
        if i % 4 == 3:  # a plausible prefix and "{" so the JSON parser and the size checks are reached
            body = b"{" + r.randbytes(r.randint(0, 300))
            length = r.choice([len(body), len(body) + r.randint(1, 50), r.randint(0, 2**64 - 1),
                               max(0, len(body) - r.randint(1, 20))])
            yield pack(body, r.randbytes(r.randint(0, 200)), length)
        else:
            yield r.randbytes(r.choice([0, 1, 7, 8, 9, 16, r.randint(0, 64), r.randint(0, 5000)]))


def gen_truncations(r: random.Random, base: bytes, n: int):
    for cut in range(len(base)):
        yield base[:cut]


def gen_byte_flips(r: random.Random, base: bytes, n: int):
    header_len = struct.unpack("<Q", base[:8])[0]
    for i in range(n):
        blob = bytearray(base)
        if i % 5 == 4:  # replace a header byte by another byte (may be JSON whitespace: then it can load)
            pos = r.randrange(8, 8 + header_len)
            blob[pos] = r.choice(b" \t\n\r{}[],:\"0123456789eE-+.") if r.random() < 0.5 else r.randrange(256)
        else:
            pos = r.randrange(len(blob)) if r.random() < 0.7 else r.randrange(8 + header_len)
            blob[pos] ^= 1 << r.randrange(8)
        yield bytes(blob)


def gen_crafted(r: random.Random, base: bytes, n: int):
    header, raw, payload = split(base)
    names = [k for k in header if k != "__metadata__"]

    def dump(h):
        return json.dumps(h, separators=(",", ":")).encode()

    def mutate_entries(fn):
        h = json.loads(raw)
        fn(h)
        return h

    kinds = ["huge_length", "past_end", "overlap", "hole", "duplicate", "dtype", "shape", "junk_json", "padding",
             "missing_entry"]
    for i in range(n):
        kind = kinds[i % len(kinds)]
        name = r.choice(names)
        other = r.choice([k for k in names if k != name])
        if kind == "huge_length":
            yield pack(raw, payload, r.choice(HUGE + [len(raw) + r.randint(1, 10**6)]))
        elif kind == "past_end":
            extra = r.choice([1, 8, r.randint(1, 10**6), 2**40, 2**62])
            h = mutate_entries(lambda h, name=name, extra=extra: h[name]["data_offsets"].__setitem__(
                1, h[name]["data_offsets"][1] + extra))
            if r.random() < 0.5:
                h[name]["shape"] = [h[name]["shape"][0] + extra // 4] + h[name]["shape"][1:] if h[name]["shape"] \
                    else [extra]
            yield pack(dump(h), payload)
        elif kind == "overlap":
            def overlap(h, name=name, other=other):
                h[name]["data_offsets"] = list(h[other]["data_offsets"])
                h[name]["shape"], h[name]["dtype"] = h[other]["shape"], h[other]["dtype"]
            yield pack(dump(mutate_entries(overlap)), payload)
        elif kind == "hole":
            gap = r.choice([1, 4, 8, r.randint(1, 4096)])

            def shift(h, name=name, gap=gap):
                for k in names:
                    a, b = h[k]["data_offsets"]
                    if a >= h[name]["data_offsets"][0]:
                        h[k]["data_offsets"] = [a + gap, b + gap]
            h = json.loads(raw)
            start = h[name]["data_offsets"][0]
            shift(h)
            yield pack(dump(h), payload[:start] + b"\0" * gap + payload[start:])
        elif kind == "duplicate":
            text = raw.decode()
            entry = json.dumps(header[name], separators=(",", ":"))
            where = r.choice(["tensor", "metadata", "inner"])
            if where == "tensor":
                text = text[:-1] + f',"{name}":{entry}' + "}"
            elif where == "metadata":
                text = text[:-1] + ',"__metadata__":{"format":"charlm"}}'
            else:
                text = text.replace('"format":"charlm"', '"format":"charlm","format":"charlm"', 1)
            yield pack(text.encode(), payload)
        elif kind == "dtype":
            dtype = r.choice(DTYPES)
            yield pack(dump(mutate_entries(lambda h, name=name, dtype=dtype: h[name].update(dtype=dtype))), payload)
        elif kind == "shape":
            shape = r.choice([[], [0], [-1, 4], [2**40, 2**40], [2**62, 4], [2**32, 2**32, 2**32], [1.5], ["4"],
                              [True], None, "4", [r.randint(0, 50) for _ in range(r.randint(1, 3))]])
            yield pack(dump(mutate_entries(lambda h, name=name, shape=shape: h[name].update(shape=shape))), payload)
        elif kind == "junk_json":
            junk = r.choice([b"[]", b"1", b'"s"', b"null", b"{" * r.randint(1, 200000), b"[" * 100000,
                             b'{"__metadata__":{"format":"charlm","x":NaN}}', b'{"a":Infinity}',
                             b'{"__metadata__":[]}', b'{"__metadata__":{"format":1}}', b"{\xff\xfe}",
                             b'{"t":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}',
                             raw.replace(b'"charlm"', b'"charlm\\ud800"', 1), raw[: r.randrange(len(raw))] + b"}"])
            yield pack(junk, payload)
        elif kind == "padding":
            yield base + r.randbytes(r.choice([1, 8, 100]))  # trailing bytes: a polyglot or padded file
        else:
            yield pack(dump(mutate_entries(lambda h, name=name: h.pop(name))), payload)


def gen_resealed(r: random.Random, base: bytes, n: int):
    tensor_names = [k for k in split(base)[0] if k != "__metadata__"]

    def nan_weight(t, m):
        name = r.choice(tensor_names)
        t[name].flat[r.randrange(t[name].size)] = r.choice([np.nan, np.inf, -np.inf])

    def version(t, m):
        m["format_version"] = r.choice(["2", "3", "99", "1000000", "0", "-1", "01", " 1", "1.0", "", "x", "1_0",
                                        "١", str(10**30)])

    def config(t, m):
        cfg = json.loads(m["config"])
        key, value = r.choice([("hidden", cfg["hidden"] + r.choice([-1, 1, 1000])), ("layers", 2),
                               ("cell", r.choice(["gru", "rnn", "gru-simple", "transformer"])),
                               ("vocab_size", cfg["vocab_size"] + r.choice([-1, 1])), ("dtype", "float64"),
                               ("dtype", "float16"), ("embed", 3), ("hidden", -4), ("hidden", "4"),
                               ("layers", 0), ("unknown", 1), ("hidden", 2**40)])
        cfg[key] = value
        m["config"] = json.dumps(cfg)

    def vocab(t, m):
        v = json.loads(m["vocab"])
        choice = r.randrange(5)
        if choice == 0:
            v["chars"].append("z")
        elif choice == 1:
            v["chars"] = v["chars"][:-1]
        elif choice == 2:
            v["chars"][0] = v["chars"][1]  # duplicate character
        elif choice == 3:
            v["specials"] = ["<UNK>", "<EOS>"]
        else:
            v = [1, 2]
        m["vocab"] = json.dumps(v)

    def tensors(t, m):
        name = r.choice(tensor_names)
        choice = r.randrange(4)
        if choice == 0:
            t.pop(name)
        elif choice == 1:
            t["param/extra"] = np.zeros(3, np.float32)
        elif choice == 2:
            t[name] = t[name].astype(np.float64)
        else:
            t[name] = np.zeros(t[name].shape + (1,), t[name].dtype)

    def metadata(t, m):
        key = r.choice(["config", "vocab", "data", "train", "rng", "format"])
        if r.random() < 0.5 and key != "format":
            m.pop(key)
        else:
            m[key] = r.choice(["[1]", "1", '"s"', "not json", "{", "NaN", "[" * 5000])
            if key == "format":
                m[key] = r.choice(["pt", "Charlm", "charlm ", ""])

    changes = [nan_weight, version, config, vocab, tensors, metadata]
    for i in range(n):
        change = changes[i % len(changes)]
        yield reseal(base, change)


CATEGORIES = [("random bytes", gen_random_bytes, 2000), ("every truncation", gen_truncations, None),
              ("byte flips", gen_byte_flips, 2500), ("crafted headers", gen_crafted, 3000),
              ("resealed invalid", gen_resealed, 1200)]


# ------------------------------------------------------------------------------------------ checking


def meaning(ckpt):
    arrays = {f"param/{k}": v for k, v in ckpt.params.items()} | {f"optim/{k}": v for k, v in ckpt.optim.items()}
    for layer, group in enumerate(ckpt.state or ()):
        for k, a in enumerate(group):
            arrays[f"state/{layer}.{k}"] = a
    return ckpt.config, ckpt.vocab, ckpt.train, ckpt.data, ckpt.rng, arrays


def same_meaning(a, b) -> bool:
    *plain_a, arrays_a = a
    *plain_b, arrays_b = b
    return plain_a == plain_b and arrays_a.keys() == arrays_b.keys() and all(
        arrays_a[k].dtype == arrays_b[k].dtype and np.array_equal(arrays_a[k], arrays_b[k]) for k in arrays_a)


def describe_difference(base: bytes, blob: bytes) -> str:
    """Where a loadable mutant differs from the original: the bytes around the first difference."""
    try:
        same_json = split(base)[0] == split(blob)[0] and split(base)[2] == split(blob)[2]
    except ValueError:
        same_json = False
    if same_json:
        return "the header JSON parses to the same object and the payload is identical (only whitespace differs)"
    if len(base) != len(blob):
        return f"length {len(blob)} instead of {len(base)}"
    diffs = [i for i in range(len(base)) if base[i] != blob[i]]
    i = diffs[0]
    before, after = base[max(0, i - 12):i + 4], blob[max(0, i - 12):i + 4]
    return f"{len(diffs)} byte(s) differ, first at {i}: {before!r} -> {after!r}"


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=20261125)
    parser.add_argument("--scale", type=float, default=1.0, help="Multiply the sampled case counts.")
    parser.add_argument("--case-seconds", type=float, default=2.0, help="Time bound of one case.")
    parser.add_argument("--max-rss-growth", type=float, default=64.0, help="Allowed peak RSS growth (MB).")
    args = parser.parse_args()

    r = random.Random(args.seed)
    with tempfile.TemporaryDirectory(prefix="charlm-fuzz-") as tmp:
        tmp = Path(tmp)
        base = base_checkpoint(tmp)
        reference = meaning(load_checkpoint(tmp / "base.safetensors"))
        target = tmp / "case.safetensors"
        for _ in range(20):  # warm up every code path once before the RSS baseline
            target.write_bytes(base)
            load_checkpoint(target)
        rss0 = peak_rss_mb()
        rows, failures, messages, same_examples = [], [], defaultdict(Counter), []
        start_all = time.perf_counter()
        for name, generator, count in CATEGORIES:
            n = None if count is None else max(1, int(count * args.scale))
            outcomes, slowest = Counter(), 0.0
            for blob in generator(r, base, n):
                target.write_bytes(blob)
                t0 = time.perf_counter()
                try:
                    loaded = load_checkpoint(target)
                except CheckpointError as exc:
                    outcome = "rejected"
                    text = str(exc).replace(str(target), "FILE")
                    messages[name][" ".join(w for w in text.split()[:6] if not any(c.isdigit() for c in w))] += 1
                except Exception as exc:  # noqa: BLE001 - anything else is a finding
                    outcome = f"CRASH:{type(exc).__name__}"
                    failures.append((name, outcome, str(exc)[:200], blob[:80]))
                else:
                    if blob == base:
                        outcome = "unchanged"  # the mutation happened to write the original bytes back
                    elif same_meaning(meaning(loaded), reference):
                        outcome = "same"
                        same_examples.append((name, describe_difference(base, blob)))
                    else:
                        outcome = "DIFFERENT"
                        failures.append((name, outcome, describe_difference(base, blob), blob[:80]))
                elapsed = time.perf_counter() - t0
                slowest = max(slowest, elapsed)
                if elapsed > args.case_seconds:
                    outcomes["SLOW"] += 1
                    failures.append((name, "SLOW", f"{elapsed:.1f}s", blob[:80]))
                outcomes[outcome] += 1
            rows.append((name, sum(outcomes.values()), outcomes, slowest, peak_rss_mb() - rss0))
        total_seconds = time.perf_counter() - start_all

    print(f"checkpoint loader fuzz: base file {len(base)} bytes, seed {args.seed}, {total_seconds:.1f}s\n")
    print(f"| {'category':<18} | {'cases':>6} | {'rejected':>8} | {'unchanged':>9} | {'loaded, same':>12} | "
          f"{'failures':>8} | {'slowest case':>12} | {'peak RSS growth':>15} |")
    print(f"|{'-' * 20}|{'-' * 8}|{'-' * 10}|{'-' * 11}|{'-' * 14}|{'-' * 10}|{'-' * 14}|{'-' * 17}|")
    total = Counter()
    for name, cases, outcomes, slowest, rss in rows:
        bad = cases - outcomes["rejected"] - outcomes["same"] - outcomes["unchanged"]
        total.update(outcomes)
        print(f"| {name:<18} | {cases:>6} | {outcomes['rejected']:>8} | {outcomes['unchanged']:>9} | "
              f"{outcomes['same']:>12} | {bad:>8} | {slowest * 1000:>9.1f} ms | {rss:>12.1f} MB |")
    n_total = sum(row[1] for row in rows)
    bad = n_total - total["rejected"] - total["same"] - total["unchanged"]
    print(f"| {'total':<18} | {n_total:>6} | {total['rejected']:>8} | {total['unchanged']:>9} | {total['same']:>12} | "
          f"{bad:>8} | {'':>12} | {peak_rss_mb() - rss0:>12.1f} MB |")
    print("\nunchanged: the mutation wrote the original bytes back (e.g. a byte replaced by itself), so it loads."
          "\nloaded, same: different bytes that load to exactly the original checkpoint (config, vocabulary,"
          "\nevery array, all metadata); each is listed below with the bytes that changed.")
    for name, where in same_examples:
        print(f"  {name:<18} {where}")
    print("\nmost common rejection messages per category (digits dropped):")
    for name, counter in messages.items():
        for text, count in counter.most_common(4):
            print(f"  {name:<18} {count:>5}  {text}")
    growth = peak_rss_mb() - rss0
    if growth > args.max_rss_growth:
        failures.append(("memory", "RSS", f"peak RSS grew by {growth:.0f} MB", b""))
    if failures:
        print(f"\nFAILED: {len(failures)} finding(s)")
        for finding in failures[:20]:
            print("  ", finding)
        return 1
    print(f"\nOK: {n_total} cases, only CheckpointError raised, nothing slow, nothing loaded that should not.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
