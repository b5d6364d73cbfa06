"""Word-level language models: charlm's word mode against its char mode and a classic PyTorch word LSTM.

    flock /tmp/charlm-bench.lock .venv/bin/python bench/word.py [--corpus FILE] [--time 5m] [--no-torch]

The corpus is split into its first 90% (training) and last 10% (held out, `--val-file`), as bench/quality.py
does. Each contestant trains for the same wall-clock budget and is then scored on the whole held-out text,
exactly (one stream, state carried from its start):
- charlm --tokens word and charlm --tokens char, default recipes otherwise (`charlm perplexity` scores them);
- PyTorch: the word_language_model recipe of pytorch/examples (Embedding 200 -> LSTM 2 x 200 -> Linear, dropout
  0.2, plain SGD at lr 20 divided by 4 whenever an epoch's validation loss does not improve, gradient norm
  clipped at 0.25, BPTT 35, batch 20, weights uniform in +-0.1), fed the very ids charlm's word tokenizer gives
  (same vocabulary, same split), so the figures compare token for token.
Then a speed race on the PyTorch recipe's shape (2 x 200, embedding 200, batch 20 x 35): tokens/s of charlm's
training step against PyTorch's. Last, memory on that shape at vocabularies of 1,002, 10,002 and 50,002: the
peak RSS beyond the parameter-sized arrays and one (T*B, V) logits buffer, which must not grow with V.

Prints a table of held-out nats/token, word perplexity, bits/char and <UNK> rate, the speed ratio, and with
--json one JSON object.
"""

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from machine import peak_rss_mb
from quality import split_corpus  # the same 90/10 split as the quality benchmark

DEFAULT_CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpora" / "tinyshakespeare.txt"
LN2 = math.log(2)
PEER = {"embed": 200, "hidden": 200, "layers": 2, "dropout": 0.2, "lr": 20.0, "clip": 0.25, "bptt": 35,
        "batch": 20, "init": 0.1, "anneal": 4.0}


def charlm(*args) -> str:
    """Run the charlm CLI with --json; returns its stdout."""
    done = subprocess.run([sys.executable, "-m", "charlm", *map(str, args), "--json"], capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"charlm {' '.join(map(str, args))} failed:\n{done.stderr}")
    return done.stdout


def run_charlm(train: Path, val: Path, workdir: Path, tokens: str, budget: str, extra: list[str]) -> dict:
    out = workdir / f"run-{tokens}"
    start = time.perf_counter()
    lines = charlm("train", train, "--val-file", val, "--tokens", tokens, "--time", budget, "--out", out, "-q",
                   *extra).splitlines()  # one JSON object per line
    wall = time.perf_counter() - start
    done = json.loads(lines[-1])
    total = json.loads(charlm("perplexity", out, val, "-q"))["total"]  # one indented JSON object
    return {"name": f"charlm --tokens {tokens}", "wall_seconds": round(wall, 1), "steps": done["steps"],
            "tokens_per_sec": done["chars_per_sec"], "nats_per_token": total["nats_per_token"],
            "perplexity": total["perplexity"], "bits_per_char": total["bits_per_char"],
            "unk_rate": total["unk_rate"]}


# ------------------------------------------------------------------------------------------ PyTorch peer

def word_ids(train: Path, val: Path, cache_dir: Path):
    """The ids charlm's word tokenizer gives the two files (vocabulary built from the training part)."""
    from charlm.text.cache import prepare_corpus

    corpus = prepare_corpus(train, tokens="word", cache_dir=cache_dir)
    held_out = prepare_corpus(val, vocab=corpus.vocab, cache_dir=cache_dir)
    return (np.asarray(corpus.ids, dtype=np.int64), np.asarray(held_out.ids, dtype=np.int64), corpus.vocab.size,
            held_out.n_chars + held_out.n_docs, int(held_out.n_unk))


def torch_peer(train_ids, val_ids, vocab_size, val_chars, n_unk, seconds: float, threads: int) -> dict:
    import torch
    import torch.nn as nn

    torch.manual_seed(1337)
    torch.set_num_threads(threads)
    p = PEER

    class WordLM(nn.Module):
        def __init__(self):
            super().__init__()
            self.drop = nn.Dropout(p["dropout"])
            self.embed = nn.Embedding(vocab_size, p["embed"])
            self.rnn = nn.LSTM(p["embed"], p["hidden"], p["layers"], dropout=p["dropout"])
            self.head = nn.Linear(p["hidden"], vocab_size)
            for w in (self.embed.weight, self.head.weight):
                nn.init.uniform_(w, -p["init"], p["init"])
            nn.init.zeros_(self.head.bias)

        def forward(self, x, state):
            out, state = self.rnn(self.drop(self.embed(x)), state)
            return self.head(self.drop(out)), state

    def columns(ids, batch):  # B contiguous streams as the columns of a (n, B) tensor
        n = len(ids) // batch
        return torch.from_numpy(ids[:n * batch].reshape(batch, n).T.copy())

    def detached(state):
        return tuple(s.detach() for s in state)

    model = WordLM()
    loss_fn = nn.CrossEntropyLoss()
    data = columns(train_ids, p["batch"])

    def held_out_nats(streams: int) -> tuple[float, int]:
        model.eval()
        cols = columns(val_ids, streams)
        total, count, state = 0.0, 0, None
        with torch.no_grad():
            for i in range(0, len(cols) - 1, p["bptt"]):
                x, y = cols[i:i + p["bptt"]], cols[i + 1:i + 1 + p["bptt"]]
                x = x[:len(y)]
                logits, state = model(x, state)
                total += float(loss_fn(logits.reshape(-1, vocab_size), y.reshape(-1))) * y.numel()
                count += y.numel()
        model.train()
        return total, count

    lr, best, start, tokens, step_seconds = p["lr"], math.inf, time.perf_counter(), 0, 0.0
    epochs = 0
    while time.perf_counter() - start < seconds:
        state = None
        for i in range(0, len(data) - 1, p["bptt"]):
            if time.perf_counter() - start >= seconds:
                break
            t0 = time.perf_counter()
            x, y = data[i:i + p["bptt"]], data[i + 1:i + 1 + p["bptt"]]
            x = x[:len(y)]
            state = detached(state) if state is not None else None
            model.zero_grad()
            logits, state = model(x, state)
            loss = loss_fn(logits.reshape(-1, vocab_size), y.reshape(-1))
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), p["clip"])
            with torch.no_grad():
                for w in model.parameters():
                    w.add_(w.grad, alpha=-lr)
            step_seconds += time.perf_counter() - t0
            tokens += y.numel()
        else:
            epochs += 1
            total, count = held_out_nats(10)  # the recipe's per-epoch validation (eval batch 10)
            if total / count < best:
                best = total / count
            else:
                lr /= p["anneal"]
    total, count = held_out_nats(1)  # exact: one stream over all held-out text
    nats = total / count
    return {"name": "PyTorch word_language_model", "wall_seconds": round(time.perf_counter() - start, 1),
            "epochs": epochs, "tokens_per_sec": tokens / step_seconds, "nats_per_token": nats,
            "perplexity": math.exp(nats), "bits_per_char": total / val_chars / LN2,
            "unk_rate": n_unk / max(1, len(val_ids) - 1)}


def torch_speed(vocab_size: int, steps: int, threads: int) -> float:
    """Tokens/s of the PyTorch recipe's training step (random ids, the recipe's shape)."""
    import torch
    import torch.nn as nn

    torch.set_num_threads(threads)
    p = PEER
    embed = nn.Embedding(vocab_size, p["embed"])
    rnn = nn.LSTM(p["embed"], p["hidden"], p["layers"], dropout=p["dropout"])
    head = nn.Linear(p["hidden"], vocab_size)
    params = [*embed.parameters(), *rnn.parameters(), *head.parameters()]
    x = torch.randint(vocab_size, (p["bptt"], p["batch"]))
    y = torch.randint(vocab_size, (p["bptt"], p["batch"]))
    times = []
    for i in range(steps + 3):
        t0 = time.perf_counter()
        out, _ = rnn(nn.functional.dropout(embed(x), p["dropout"]))
        loss = nn.functional.cross_entropy(head(nn.functional.dropout(out, p["dropout"])).reshape(-1, vocab_size),
                                           y.reshape(-1))
        for w in params:
            w.grad = None
        loss.backward()
        nn.utils.clip_grad_norm_(params, p["clip"])
        with torch.no_grad():
            for w in params:
                w.add_(w.grad, alpha=-1e-3)
        if i >= 3:
            times.append(time.perf_counter() - t0)
    return p["bptt"] * p["batch"] / float(np.median(times))


def charlm_steps(vocab_size: int, steps: int) -> tuple[list[float], int]:
    """Run charlm's training step (loss, gradients, clipping, SGD) on the PyTorch recipe's shape `steps`
    times; returns (each step's seconds, the parameters' bytes)."""
    from charlm.engine.optim import clip_gradients, make_optimizer
    from charlm.models.config import ModelConfig
    from charlm.models.lm import init_params, init_state, loss_and_grads

    p = PEER
    cfg = ModelConfig(cell="lstm", vocab_size=vocab_size, hidden=p["hidden"], layers=p["layers"], embed=p["embed"],
                      dropout=p["dropout"])
    rng = np.random.default_rng(0)
    params = init_params(cfg, rng)
    opt = make_optimizer("sgd", params)
    x = rng.integers(vocab_size, size=(p["bptt"], p["batch"]))
    y = rng.integers(vocab_size, size=(p["bptt"], p["batch"]))
    state, ws, times = init_state(cfg, p["batch"]), {}, []
    for _ in range(steps):
        t0 = time.perf_counter()
        _, grads, state = loss_and_grads(params, cfg, x, y, state, rng=rng, workspace=ws)
        clip_gradients(grads, p["clip"])
        opt.step(params, grads, 1e-3)
        times.append(time.perf_counter() - t0)
    return times, sum(a.nbytes for a in params.values())


def charlm_speed(vocab_size: int, steps: int) -> float:
    """Tokens/s of charlm's training step on the PyTorch recipe's shape (median of `steps`, after 3 warm-up)."""
    times, _ = charlm_steps(vocab_size, steps + 3)
    return PEER["bptt"] * PEER["batch"] / float(np.median(times[3:]))


# ------------------------------------------------------------------------------------------ memory

MEMORY_VOCABS = (1_002, 10_002, 50_002)


def memory_probe(vocab_size: int, steps: int = 5) -> dict:
    """Peak RSS of training steps at one vocabulary size (run in a fresh process), and the bytes that are
    allowed to grow with the vocabulary: parameter-sized arrays (the parameters, their gradients, SGD's
    update buffer) and one (T*B, V) logits buffer (float32)."""
    _, param_bytes = charlm_steps(vocab_size, steps)
    logits_bytes = PEER["bptt"] * PEER["batch"] * vocab_size * 4
    return {"vocab": vocab_size, "peak_rss_mb": peak_rss_mb(), "allowed_mb": (3 * param_bytes + logits_bytes) / 2**20}


def memory_growth() -> list[dict]:
    """memory_probe at each of MEMORY_VOCABS, each in its own process; per row, the RSS beyond the allowed
    bytes (which must stay flat as the vocabulary grows)."""
    rows = []
    for vocab_size in MEMORY_VOCABS:
        done = subprocess.run([sys.executable, __file__, "--memory-probe", str(vocab_size)], capture_output=True,
                              text=True, check=True)
        row = json.loads(done.stdout)
        row["beyond_mb"] = row["peak_rss_mb"] - row["allowed_mb"]
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--time", default="5m", help="training budget of every contestant")
    parser.add_argument("--no-torch", action="store_true", help="skip the PyTorch peer")
    parser.add_argument("--no-char", action="store_true", help="skip charlm's char mode")
    parser.add_argument("--speed-steps", type=int, default=30, help="timed steps of the speed race")
    parser.add_argument("--threads", type=int, default=2, help="PyTorch threads")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--memory-probe", type=int, metavar="V", help=argparse.SUPPRESS)  # one memory_growth row
    parser.add_argument("extra", nargs="*", help="flags passed on to charlm train (after --)")
    args = parser.parse_args()
    if args.memory_probe:
        print(json.dumps(memory_probe(args.memory_probe)))
        return
    if not args.corpus.exists():
        raise SystemExit(f"{args.corpus}: no such corpus (pass --corpus)")
    try:
        import torch  # noqa: F401
        have_torch = not args.no_torch
    except ImportError:
        have_torch = False

    from charlm.training.options import parse_duration

    seconds = parse_duration(args.time)
    rows, speed = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        train, val = split_corpus(args.corpus, workdir)
        rows.append(run_charlm(train, val, workdir, "word", args.time, args.extra))
        if not args.no_char:
            rows.append(run_charlm(train, val, workdir, "char", args.time, args.extra))
        train_ids, val_ids, vocab_size, val_chars, n_unk = word_ids(train, val, workdir / "cache")
        if have_torch:
            rows.append(torch_peer(train_ids, val_ids, vocab_size, val_chars, n_unk, seconds, args.threads))
        speed["vocab"] = vocab_size
        memory = memory_growth()
        speed["charlm_tokens_per_sec"] = charlm_speed(vocab_size, args.speed_steps)
        if have_torch:
            speed["torch_tokens_per_sec"] = torch_speed(vocab_size, args.speed_steps, args.threads)
            speed["ratio"] = speed["charlm_tokens_per_sec"] / speed["torch_tokens_per_sec"]
    if args.json:
        print(json.dumps({"corpus": str(args.corpus), "time": args.time, "rows": rows, "speed": speed,
                          "memory": memory}))
        return
    print(f"{args.corpus.name}: first 90% train, last 10% held out, {args.time} each")
    print(f"{'':32} {'nats/token':>10} {'word ppl':>9} {'bits/char':>9} {'<UNK>':>7} {'tokens/s':>9}")
    for r in rows:
        ppl = f"{r['perplexity']:9.1f}" if r["name"] != "charlm --tokens char" else f"{'':>9}"
        print(f"{r['name']:32} {r['nats_per_token']:10.4f} {ppl} {r['bits_per_char']:9.4f} "
              f"{r['unk_rate']:7.2%} {r['tokens_per_sec']:9,.0f}")
    line = f"speed, LSTM 2x200, embedding 200, batch 20 x 35, V={speed['vocab']:,}: charlm " \
           f"{speed['charlm_tokens_per_sec']:,.0f} tokens/s"
    if "torch_tokens_per_sec" in speed:
        line += f", PyTorch {speed['torch_tokens_per_sec']:,.0f} tokens/s ({speed['ratio']:.2f}x)"
    print(line)
    print("memory, same shape: peak RSS beyond the parameter-sized arrays (parameters, gradients, SGD's update "
          "buffer) and one (T*B, V) logits buffer must not grow with V")
    for m in memory:
        print(f"  V={m['vocab']:>7,}: peak RSS {m['peak_rss_mb']:7.1f} MB, allowed {m['allowed_mb']:6.1f} MB, "
              f"beyond {m['beyond_mb']:6.1f} MB")


if __name__ == "__main__":
    main()
