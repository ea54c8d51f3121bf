#!/usr/bin/env python3
"""The PyTorch side of bench/run_train_bench.sh: the same Qwen2-shaped model as bench_train.cpp
(hidden 512, 8 layers, 8 query / 2 KV heads, FFN 1408, vocab 8192, untied head, q/k/v biases),
the same batch, sequence length, AdamW and thread count, timed the same way (forward + backward +
clip + optimizer step). Prints one JSON line and which BLAS library the process loaded."""
import argparse
import json
import math
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class RMSNorm(nn.Module):
    def __init__(self, dim, eps=1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x):
        return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps))


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


class Layer(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        hd = c["head_dim"]
        self.input_layernorm = RMSNorm(c["hidden"])
        self.q_proj = nn.Linear(c["hidden"], c["heads"] * hd)
        self.k_proj = nn.Linear(c["hidden"], c["kv_heads"] * hd)
        self.v_proj = nn.Linear(c["hidden"], c["kv_heads"] * hd)
        self.o_proj = nn.Linear(c["heads"] * hd, c["hidden"], bias=False)
        self.post_attention_layernorm = RMSNorm(c["hidden"])
        self.gate_proj = nn.Linear(c["hidden"], c["ffn"], bias=False)
        self.up_proj = nn.Linear(c["hidden"], c["ffn"], bias=False)
        self.down_proj = nn.Linear(c["ffn"], c["hidden"], bias=False)

    def forward(self, x, cos, sin, mask):
        B, T, _ = x.shape
        c, hd = self.c, self.c["head_dim"]
        h = self.input_layernorm(x)
        q = self.q_proj(h).view(B, T, c["heads"], hd).transpose(1, 2)
        k = self.k_proj(h).view(B, T, c["kv_heads"], hd).transpose(1, 2)
        v = self.v_proj(h).view(B, T, c["kv_heads"], hd).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        group = c["heads"] // c["kv_heads"]
        k = k.repeat_interleave(group, dim=1)
        v = v.repeat_interleave(group, dim=1)
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(hd) + mask
        attn = torch.softmax(scores, dim=-1) @ v
        x = x + self.o_proj(attn.transpose(1, 2).reshape(B, T, -1))
        h = self.post_attention_layernorm(x)
        return x + self.down_proj(F.silu(self.gate_proj(h)) * self.up_proj(h))


class Model(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.embed_tokens = nn.Embedding(c["vocab"], c["hidden"])
        self.layers = nn.ModuleList(Layer(c) for _ in range(c["layers"]))
        self.norm = RMSNorm(c["hidden"])
        self.lm_head = nn.Linear(c["hidden"], c["vocab"], bias=False)
        hd = c["head_dim"]
        inv_freq = 1.0 / (10000.0 ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd))
        angles = torch.outer(torch.arange(c["seq"], dtype=torch.float64), inv_freq)
        emb = torch.cat((angles, angles), dim=-1)
        self.register_buffer("cos", emb.cos().float())
        self.register_buffer("sin", emb.sin().float())
        T = c["seq"]
        self.register_buffer("mask", torch.full((T, T), float("-inf")).triu(1))

    def forward(self, tokens):
        x = self.embed_tokens(tokens)
        for layer in self.layers:
            x = layer(x, self.cos, self.sin, self.mask)
        return self.lm_head(self.norm(x))


def loaded_blas():
    libs = set()
    with open("/proc/self/maps") as maps:
        for line in maps:
            path = line.split()[-1]
            if any(s in path for s in ("blas", "mkl", "lapack")):
                libs.add(path)
    return sorted(libs)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--seq", type=int, default=256)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(1)
    c = dict(hidden=512, layers=8, heads=8, kv_heads=2, head_dim=64, ffn=1408, vocab=8192, seq=a.seq)
    model = Model(c)
    params = sum(p.numel() for p in model.parameters())
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=3e-4, betas=(0.9, 0.95), eps=1e-8)
    tokens = torch.randint(0, c["vocab"], (a.batch, a.seq + 1))
    inputs, targets = tokens[:, :-1], tokens[:, 1:]
    seconds, loss = 0.0, 0.0
    for step in range(1 + a.steps):
        start = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        logits = model(inputs)
        out = F.cross_entropy(logits.reshape(-1, c["vocab"]), targets.reshape(-1))
        out.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        took = time.perf_counter() - start
        if step > 0:
            seconds += took
        loss = out.item()
    print(json.dumps({"engine": "pytorch " + torch.__version__, "params": params, "threads": a.threads,
                      "batch": a.batch, "seq": a.seq, "tokens_per_s": round(a.batch * a.seq * a.steps / seconds, 1),
                      "ms_per_step": round(1000 * seconds / a.steps, 1), "last_loss": round(loss, 4),
                      "blas_loaded": loaded_blas()}))


if __name__ == "__main__":
    main()
