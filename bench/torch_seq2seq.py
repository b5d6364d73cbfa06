#!/usr/bin/env python3
"""The PyTorch peer of `charlm train --task translate`: the encoder–decoder a PyTorch user would write, of the
shape charlm's recipe trains, for the same time, on the same pairs (bench only: torch is never in the package).

nn.Embedding (--embed) -> bidirectional nn.LSTM encoder over packed sources -> tanh bridge of both final
states into every decoder layer's (h, c) -> nn.LSTM decoder fed the previous target token (teacher forcing)
-> attention over the encoder's states with padding masked (--attention: Bahdanau's additive, charlm's default,
or Luong's general) -> tanh([context; h] W) -> nn.Linear.
Adam with gradient-norm clipping 1.0, dropout between layers, batches of pairs of similar lengths, the rate
decayed by a cosine over the time budget to 5%. Throughput counts padded source tokens per second (as charlm's
tokens/s). Test: greedy decoding batched; WER = share of sources whose output matches none of their
references, PER = phoneme edits to the nearest reference over its length, summed over the file. The last line
printed is a JSON object with all figures.
"""
import argparse
import json
import math
import random
import re
import time
from collections import defaultdict

import sacrebleu
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

EOS, UNK = 0, 1
# How each side is cut into tokens, and how an output's tokens are written back.
SPLIT = {"char": list, "symbols": str.split, "word": re.compile(r"\w+|[^\w\s]").findall}
JOIN = {"char": "".join, "symbols": " ".join, "word": " ".join}


def read_pairs(path):
    pairs = []
    for line in open(path, encoding="utf-8"):
        if "\t" in line:
            s, t = line.rstrip("\n").split("\t")[:2]
            pairs.append((s, t))
    return pairs


class Vocab:
    def __init__(self, seqs, max_vocab):
        counts = defaultdict(int)
        for seq in seqs:
            for tok in seq:
                counts[tok] += 1
        self.tokens = ["<EOS>", "<UNK>"] + sorted(counts, key=lambda t: (-counts[t], t))[:max_vocab - 2]
        self.index = {t: i for i, t in enumerate(self.tokens)}

    def encode(self, seq):
        return [self.index.get(t, UNK) for t in seq]


class Seq2Seq(nn.Module):
    def __init__(self, V, U, embed, hidden, layers, dropout, attention):
        super().__init__()
        self.layers, self.hidden, self.attention = layers, hidden, attention
        self.src_emb, self.tgt_emb = nn.Embedding(V, embed), nn.Embedding(U, embed)
        between = dropout if layers > 1 else 0.0  # nn.LSTM's dropout acts between layers only
        self.encoder = nn.LSTM(embed, hidden, layers, dropout=between, bidirectional=True)
        self.bridge = nn.Linear(2 * hidden, layers * 2 * hidden)
        self.decoder = nn.LSTM(embed, hidden, layers, dropout=between)
        self.att = nn.Linear(2 * hidden, hidden, bias=False)  # keys: e W (general), e Wk (additive)
        if attention == "additive":
            self.att_q = nn.Linear(hidden, hidden)  # q Wq + b
            self.att_v = nn.Linear(hidden, 1, bias=False)
        self.att_out = nn.Linear(3 * hidden, hidden)
        self.head = nn.Linear(hidden, U)
        self.drop = nn.Dropout(dropout)

    def encode(self, src, lengths):  # src (S, B)
        packed = pack_padded_sequence(self.src_emb(src), lengths.cpu(), enforce_sorted=False)
        out, (h, _) = self.encoder(packed)
        out, _ = pad_packed_sequence(out)  # (S, B, 2H)
        out = self.drop(out)
        summary = torch.cat([h[-2], h[-1]], dim=1)  # the top layer's forward and reverse final states
        start = torch.tanh(self.bridge(summary)).view(-1, self.layers, 2, self.hidden)
        state = (start[:, :, 0].transpose(0, 1).contiguous(), start[:, :, 1].transpose(0, 1).contiguous())
        memory = out.transpose(0, 1)  # (B, S, 2H)
        keys = self.att(memory)  # (B, S, H)
        real = torch.arange(memory.shape[1])[None, :] < lengths[:, None]
        return memory, keys, real, state

    def decode(self, memory, keys, real, state, tgt_in):  # tgt_in (T, B)
        out, state = self.decoder(self.tgt_emb(tgt_in), state)
        q = self.drop(out).transpose(0, 1)  # (B, T, H)
        if self.attention == "additive":  # v · tanh(q Wq + e Wk + b), (B, T, S)
            scores = self.att_v(torch.tanh(self.att_q(q)[:, :, None, :] + keys[:, None, :, :])).squeeze(3)
        else:
            scores = q @ keys.transpose(1, 2)  # (B, T, S)
        scores = scores.masked_fill(~real[:, None, :], float("-inf"))
        context = torch.softmax(scores, dim=2) @ memory
        z = torch.tanh(self.att_out(torch.cat([context, q], dim=2)))
        return self.head(z), state  # (B, T, U)


def pad(seqs):
    T = max(len(s) for s in seqs)
    x = torch.full((T, len(seqs)), EOS, dtype=torch.long)
    for b, s in enumerate(seqs):
        x[:len(s), b] = torch.tensor(s)
    return x, torch.tensor([len(s) for s in seqs])


def batches(src, tgt, batch, rng):
    order = list(range(len(src)))
    rng.shuffle(order)
    window = 50 * batch
    chunks = []
    for i in range(0, len(order), window):
        part = sorted(order[i:i + window], key=lambda j: len(src[j]) + len(tgt[j]))
        chunks += [part[k:k + batch] for k in range(0, len(part), batch)]
    rng.shuffle(chunks)
    return chunks


def edits(a, b):
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, y in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (x != y))
    return row[-1]


@torch.no_grad()
def greedy(model, src_ids, U_tokens, batch=512):
    model.eval()
    found = [None] * len(src_ids)
    order = sorted(range(len(src_ids)), key=lambda i: len(src_ids[i]))
    for k in range(0, len(order), batch):
        rows = order[k:k + batch]
        x, lengths = pad([src_ids[i] for i in rows])
        memory, keys, real, state = model.encode(x, lengths)
        ids = torch.full((1, len(rows)), EOS, dtype=torch.long)
        out = [[] for _ in rows]
        done = torch.zeros(len(rows), dtype=torch.bool)
        for _ in range(int(3 * lengths.max()) + 10):
            logits, state = model.decode(memory, keys, real, state, ids)
            logits[:, -1, UNK] = float("-inf")
            ids = logits[:, -1].argmax(dim=1)[None, :]
            for b, t in enumerate(ids[0].tolist()):
                if not done[b]:
                    if t == EOS:
                        done[b] = True
                    else:
                        out[b].append(U_tokens[t])
            if done.all():
                break
        for b, i in enumerate(rows):
            found[i] = out[b]
    model.train()
    return found


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--train", required=True)
    ap.add_argument("--test", required=True)
    ap.add_argument("--time", type=float, default=1200.0, help="training seconds")
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--embed", type=int, default=64)
    ap.add_argument("--dropout", type=float, default=0.2)
    ap.add_argument("--attention", choices=("additive", "general"), default="additive")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--seed", type=int, default=1337)
    ap.add_argument("--source-tokens", choices=tuple(SPLIT), default="char")
    ap.add_argument("--target-tokens", choices=tuple(SPLIT), default="symbols")
    ap.add_argument("--max-vocab", type=int, default=10_000, help="tokens kept per side, most frequent first")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    rng = random.Random(a.seed)
    split, source_split = SPLIT[a.target_tokens], SPLIT[a.source_tokens]
    train = read_pairs(a.train)
    sv, tv = Vocab([source_split(s) for s, _ in train], a.max_vocab), Vocab([split(t) for _, t in train], a.max_vocab)
    src = [sv.encode(source_split(s)) for s, _ in train]
    tgt = [tv.encode(split(t)) + [EOS] for _, t in train]
    model = Seq2Seq(len(sv.tokens), len(tv.tokens), a.embed, a.hidden, a.layers, a.dropout, a.attention)
    opt = torch.optim.Adam(model.parameters(), lr=a.lr)
    steps, tokens, start, losses = 0, 0, time.perf_counter(), []
    while time.perf_counter() - start < a.time:
        for rows in batches(src, tgt, a.batch, rng):
            elapsed = time.perf_counter() - start
            if elapsed >= a.time:
                break
            for group in opt.param_groups:
                group["lr"] = a.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * elapsed / a.time)))
            x, x_len = pad([src[i] for i in rows])
            y, y_len = pad([tgt[i] for i in rows])
            y_in = torch.cat([torch.full((1, y.shape[1]), EOS, dtype=torch.long), y[:-1]])
            memory, keys, real, state = model.encode(x, x_len)
            logits, _ = model.decode(memory, keys, real, state, y_in)
            mask = torch.arange(y.shape[0])[None, :] < y_len[:, None]  # (B, T)
            loss = F.cross_entropy(logits[mask], y.T[mask])
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            steps, tokens = steps + 1, tokens + x.numel()
            losses.append(loss.item())
    train_seconds = time.perf_counter() - start
    refs, texts = defaultdict(list), defaultdict(list)
    for s, t in read_pairs(a.test):
        refs[s].append(split(t))
        texts[s].append(t)
    sources = list(refs)
    t0 = time.perf_counter()
    outputs = greedy(model, [sv.encode(source_split(s)) for s in sources], tv.tokens)
    decode_seconds = time.perf_counter() - t0
    wrong = sum(o not in refs[s] for s, o in zip(sources, outputs, strict=True))
    errors = total = 0
    for s, o in zip(sources, outputs, strict=True):
        e, n = min((edits(o, r), len(r)) for r in refs[s])
        errors, total = errors + e, total + n
    hyps = [JOIN[a.target_tokens](o) for o in outputs]
    most = max(len(t) for t in texts.values())
    streams = [[texts[s][k] if k < len(texts[s]) else None for s in sources] for k in range(most)]
    print(json.dumps({"peer": "torch", "bleu": sacrebleu.corpus_bleu(hyps, streams).score,
                      "chrf": sacrebleu.corpus_chrf(hyps, streams).score,
                      "examples": dict(zip(sources[:5], hyps[:5], strict=True)),
                      "torch": torch.__version__, "threads": torch.get_num_threads(),
                      "steps": steps, "train_seconds": round(train_seconds, 1),
                      "tokens_per_sec": round(tokens / train_seconds), "final_loss": sum(losses[-50:]) / 50,
                      "n": len(sources), "wer": wrong / len(sources), "per": errors / total,
                      "words_per_sec_greedy": round(len(sources) / decode_seconds)}))


if __name__ == "__main__":
    main()
